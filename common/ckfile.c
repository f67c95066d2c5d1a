/* ckfile.c - see ckfile.h. */
#include "common/ckfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/errtext.h"

static const char MAGIC[8] = {'M', 'L', 'T', 'C', 'K', 'P', 'T', '1'};
static const char END[4] = {'E', 'N', 'D', '!'};

struct mlt_ckw {
    FILE *f;
    char *dir, *path, *tmp;
    uint64_t len; /* payload bytes */
    uint32_t crc;
    int err; /* first write error (-errno) */
};

struct mlt_ckr {
    FILE *f;
    uint64_t len, pos, size;
    uint32_t crc;
    bool bad;
};

/* ---- writing ------------------------------------------------------------------ */

mlt_ckw_t *mlt_ckw_open(const char *dir, const char *name, char *err, size_t errlen)
{
    mlt_ckw_t *w = mlt_calloc(1, sizeof *w);
    size_t n = strlen(dir) + strlen(name) + 8;
    w->dir = mlt_strdup(dir);
    w->path = mlt_malloc(n);
    w->tmp = mlt_malloc(n);
    snprintf(w->path, n, "%s/%s", dir, name);
    snprintf(w->tmp, n, "%s/%s.tmp", dir, name);
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0 || !(w->f = fdopen(fd, "wb"))) {
        mlt_errf(-errno, err, errlen, "cannot create %s: %s", w->tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        mlt_free(w->dir);
        mlt_free(w->path);
        mlt_free(w->tmp);
        mlt_free(w);
        return NULL;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    w->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    if (fwrite(MAGIC, sizeof MAGIC, 1, w->f) != 1)
        w->err = -EIO;
    return w;
}

void mlt_ckw_put(mlt_ckw_t *w, const void *p, size_t len)
{
    if (w->err || len == 0)
        return;
    if (fwrite(p, 1, len, w->f) != len) {
        w->err = errno ? -errno : -EIO;
        return;
    }
    /* zlib's crc32 takes a uInt length: feed it in pieces */
    const unsigned char *b = p;
    for (size_t done = 0; done < len;) {
        size_t k = len - done > (1u << 30) ? (1u << 30) : len - done;
        w->crc = (uint32_t)crc32(w->crc, b + done, (uInt)k);
        done += k;
    }
    w->len += len;
}

void mlt_ckw_u8(mlt_ckw_t *w, uint8_t v)
{
    mlt_ckw_put(w, &v, sizeof v);
}
void mlt_ckw_u32(mlt_ckw_t *w, uint32_t v)
{
    mlt_ckw_put(w, &v, sizeof v);
}
void mlt_ckw_u64(mlt_ckw_t *w, uint64_t v)
{
    mlt_ckw_put(w, &v, sizeof v);
}
void mlt_ckw_i64(mlt_ckw_t *w, int64_t v)
{
    mlt_ckw_put(w, &v, sizeof v);
}
void mlt_ckw_f64(mlt_ckw_t *w, double v)
{
    mlt_ckw_put(w, &v, sizeof v);
}

void mlt_ckw_str(mlt_ckw_t *w, const char *s)
{
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    mlt_ckw_u32(w, n);
    mlt_ckw_put(w, s, n);
}

static void ckw_free(mlt_ckw_t *w)
{
    mlt_free(w->dir);
    mlt_free(w->path);
    mlt_free(w->tmp);
    mlt_free(w);
}

void mlt_ckw_abort(mlt_ckw_t **wp)
{
    if (!wp || !*wp)
        return;
    mlt_ckw_t *w = *wp;
    if (w->f)
        fclose(w->f);
    unlink(w->tmp);
    ckw_free(w);
    *wp = NULL;
}

int mlt_ckw_close(mlt_ckw_t **wp, uint64_t *size, uint32_t *crc, char *err, size_t errlen)
{
    mlt_ckw_t *w = *wp;
    *wp = NULL;
    int rc = w->err;
    if (!rc) {
        uint64_t len = w->len;
        uint32_t c = w->crc;
        if (fwrite(&len, sizeof len, 1, w->f) != 1 || fwrite(&c, sizeof c, 1, w->f) != 1 ||
            fwrite(END, sizeof END, 1, w->f) != 1 || fflush(w->f) != 0)
            rc = errno ? -errno : -EIO;
        else if (fsync(fileno(w->f)) < 0)
            rc = -errno;
    }
    if (fclose(w->f) != 0 && !rc)
        rc = errno ? -errno : -EIO;
    w->f = NULL;
    if (!rc && rename(w->tmp, w->path) < 0)
        rc = -errno;
    if (!rc)
        rc = mlt_ckfile_sync_dir(w->dir);
    if (rc) {
        mlt_errf(rc, err, errlen, "cannot write %s: %s", w->path, strerror(-rc));
        unlink(w->tmp);
    } else {
        if (size)
            *size = w->len + MLT_CKFILE_OVERHEAD;
        if (crc)
            *crc = w->crc;
    }
    ckw_free(w);
    return rc;
}

/* ---- reading ------------------------------------------------------------------ */

mlt_ckr_t *mlt_ckr_open(const char *path, uint64_t expect_size, uint32_t expect_crc, char *err,
                        size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int e = errno;
        mlt_errf(-e, err, errlen, "cannot open %s: %s", path, strerror(e));
        if (fd >= 0)
            close(fd);
        errno = e;
        return NULL;
    }
    struct stat sb;
    char magic[8], end[4];
    uint64_t len = 0;
    uint32_t crc = 0;
    const char *why = NULL;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
        why = "not a regular file";
    else if ((uint64_t)sb.st_size < MLT_CKFILE_OVERHEAD)
        why = "shorter than a header and trailer (cut)";
    else if (expect_size && (uint64_t)sb.st_size != expect_size)
        why = "its size differs from the manifest's (cut or replaced)";
    else if (fread(magic, sizeof magic, 1, f) != 1 || memcmp(magic, MAGIC, sizeof magic) != 0)
        why = "no MLTCKPT1 magic: not a checkpoint file";
    else if (fseeko(f, sb.st_size - 16, SEEK_SET) < 0 || fread(&len, sizeof len, 1, f) != 1 ||
             fread(&crc, sizeof crc, 1, f) != 1 || fread(end, sizeof end, 1, f) != 1 ||
             memcmp(end, END, sizeof end) != 0)
        why = "no trailer (cut)";
    else if (len != (uint64_t)sb.st_size - MLT_CKFILE_OVERHEAD)
        why = "its trailer's length differs from the file's (cut)";
    else if (expect_size && expect_crc != crc)
        why = "its checksum differs from the manifest's";
    if (!why) {
        /* the CRC over the whole payload, before anything is believed */
        unsigned char *buf = mlt_malloc(1 << 20);
        uint32_t c = (uint32_t)crc32(0L, Z_NULL, 0);
        fseeko(f, sizeof MAGIC, SEEK_SET);
        for (uint64_t left = len; left && !why;) {
            size_t k = left > (1u << 20) ? (1u << 20) : (size_t)left;
            if (fread(buf, 1, k, f) != k)
                why = "read error";
            c = (uint32_t)crc32(c, buf, (uInt)k);
            left -= k;
        }
        mlt_free(buf);
        if (!why && c != crc)
            why = "CRC32 mismatch (corrupt)";
    }
    if (why) {
        mlt_errf(-EPROTO, err, errlen, "%s: %s", path, why);
        fclose(f);
        errno = EPROTO;
        return NULL;
    }
    fseeko(f, sizeof MAGIC, SEEK_SET);
    mlt_ckr_t *r = mlt_calloc(1, sizeof *r);
    r->f = f;
    r->len = len;
    r->size = (uint64_t)sb.st_size;
    r->crc = crc;
    return r;
}

int mlt_ckr_get(mlt_ckr_t *r, void *p, size_t len)
{
    if (r->bad || len > r->len - r->pos || (len && fread(p, 1, len, r->f) != len)) {
        r->bad = true;
        return -EPROTO;
    }
    r->pos += len;
    return 0;
}

int mlt_ckr_u8(mlt_ckr_t *r, uint8_t *v)
{
    return mlt_ckr_get(r, v, sizeof *v);
}
int mlt_ckr_u32(mlt_ckr_t *r, uint32_t *v)
{
    return mlt_ckr_get(r, v, sizeof *v);
}
int mlt_ckr_u64(mlt_ckr_t *r, uint64_t *v)
{
    return mlt_ckr_get(r, v, sizeof *v);
}
int mlt_ckr_i64(mlt_ckr_t *r, int64_t *v)
{
    return mlt_ckr_get(r, v, sizeof *v);
}
int mlt_ckr_f64(mlt_ckr_t *r, double *v)
{
    return mlt_ckr_get(r, v, sizeof *v);
}

int mlt_ckr_str(mlt_ckr_t *r, size_t max, char **s)
{
    uint32_t n;
    *s = NULL;
    if (mlt_ckr_u32(r, &n) || n > max || n > r->len - r->pos) {
        r->bad = true;
        return -EPROTO;
    }
    char *b = mlt_malloc((size_t)n + 1);
    if (mlt_ckr_get(r, b, n)) {
        mlt_free(b);
        return -EPROTO;
    }
    b[n] = '\0';
    if (strlen(b) != n) { /* a NUL inside */
        mlt_free(b);
        r->bad = true;
        return -EPROTO;
    }
    *s = b;
    return 0;
}

uint64_t mlt_ckr_left(const mlt_ckr_t *r)
{
    return r->len - r->pos;
}
uint64_t mlt_ckr_size(const mlt_ckr_t *r)
{
    return r->size;
}
uint32_t mlt_ckr_crc(const mlt_ckr_t *r)
{
    return r->crc;
}

void mlt_ckr_close(mlt_ckr_t **rp)
{
    if (!rp || !*rp)
        return;
    fclose((*rp)->f);
    mlt_free(*rp);
    *rp = NULL;
}

/* ---- directories ---------------------------------------------------------------- */

int mlt_ckfile_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int mlt_ckfile_mkdirs(const char *dir)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int mlt_ckfile_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    char p[1300];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(dir) < 0 ? -errno : 0;
}
