/* outfile.c - see outfile.h. The stream is glibc's fopencookie() over the
 * descriptor, with outfile_write() as its only way to the file. A write cut
 * short by an error is taken back (the file truncated to where it began):
 * the owners flush after each line, so the file ends at a whole line. */
#include "common/outfile.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/safepath.h"

struct mlt_outfile {
    FILE *f;        /* the stream over fd */
    int fd;         /* owned; closed by fclose (outfile_close) */
    int err;        /* 0, or -errno of the first failed write */
    char name[256]; /* for messages */
};

static ssize_t outfile_write(void *cookie, const char *buf, size_t n)
{
    mlt_outfile_t *o = cookie;
    if (o->err) {
        errno = -o->err;
        return 0; /* glibc: 0 is an error; the stream's error flag is set */
    }
    size_t done = 0;
    off_t start = lseek(o->fd, 0, SEEK_CUR);
    while (done < n) {
        ssize_t w = write(o->fd, buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            o->err = w < 0 ? -errno : -EIO;
            if (done && start >= 0 && ftruncate(o->fd, start) == 0) /* no half line */
                lseek(o->fd, start, SEEK_SET);
            errno = -o->err;
            return 0;
        }
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static int outfile_close(void *cookie)
{
    mlt_outfile_t *o = cookie;
    int rc = close(o->fd);
    o->fd = -1;
    return rc;
}

mlt_outfile_t *mlt_outfile_open(int dirfd, const char *name, int *rc)
{
    return mlt_outfile_reopen(dirfd, name, 0, rc);
}

int64_t mlt_outfile_tell(mlt_outfile_t *o)
{
    if (mlt_outfile_flush(o))
        return -1;
    off_t pos = lseek(o->fd, 0, SEEK_CUR);
    return pos < 0 ? -1 : (int64_t)pos;
}

mlt_outfile_t *mlt_outfile_reopen(int dirfd, const char *name, uint64_t keep, int *rc)
{
    int fd = mlt_safepath_reopen(dirfd, name, keep);
    if (fd < 0) {
        *rc = fd;
        return NULL;
    }
    mlt_outfile_t *o = mlt_calloc(1, sizeof *o);
    o->fd = fd;
    snprintf(o->name, sizeof o->name, "%s", name);
    cookie_io_functions_t io = {.write = outfile_write, .close = outfile_close};
    o->f = fopencookie(o, "w", io);
    if (!o->f) {
        *rc = -errno;
        close(fd);
        mlt_free(o);
        return NULL;
    }
    *rc = 0;
    return o;
}

FILE *mlt_outfile_stream(mlt_outfile_t *o)
{
    return o->f;
}

int mlt_outfile_flush(mlt_outfile_t *o)
{
    if (fflush(o->f) != 0 && !o->err)
        o->err = -(errno ? errno : EIO);
    return o->err;
}

int mlt_outfile_error(const mlt_outfile_t *o)
{
    return o->err;
}

const char *mlt_outfile_name(const mlt_outfile_t *o)
{
    return o->name;
}

int mlt_outfile_close(mlt_outfile_t **op)
{
    if (!op || !*op)
        return 0;
    mlt_outfile_t *o = *op;
    int rc = mlt_outfile_flush(o);
    if (!rc && fsync(o->fd) < 0 && errno != EINVAL) /* EINVAL: a file that cannot sync */
        rc = -errno;
    if (fclose(o->f) != 0 && !rc)
        rc = -(errno ? errno : EIO);
    mlt_free(o);
    *op = NULL;
    return rc;
}
