/* curve.c - see curve.h.
 *
 * A file is read whole (at most MLT_CURVE_MAX_FILE bytes, from one open file
 * descriptor that is fstat'ed, so the mode checked is the mode of what is
 * read), then cut into lines of at most MLT_CURVE_MAX_LINE bytes; a key is
 * exactly MLT_CURVE_Z85 characters that zmq_z85_decode accepts. */
#include "common/curve.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/errtext.h"

struct mlt_curve_allow {
    size_t n;
    unsigned char (*key)[32];
    char (*name)[MLT_CURVE_MAX_NAME + 1];
};

int mlt_curve_available(void)
{
    return zmq_has("curve");
}

void mlt_curve_z85(const unsigned char key[32], char *out)
{
    zmq_z85_encode(out, key, 32);
}

/* 1 if s (NUL-terminated) is a Z85 key; its binary form in bin when bin. */
static int decode_key(const char *s, unsigned char *bin)
{
    unsigned char tmp[32];
    if (strlen(s) != MLT_CURVE_Z85)
        return 0;
    return zmq_z85_decode(bin ? bin : tmp, s) != NULL;
}

/* Reads path whole into a new NUL-terminated buffer. With secret, refuses a
 * file group or others may read or write. */
static int slurp(const char *path, int secret, char **out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mlt_errf(-errno, err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0)
        rc = mlt_errf(-errno, err, errlen, "%s: fstat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = mlt_errf(-EINVAL, err, errlen, "%s: not a regular file", path);
    else if (secret && (st.st_mode & 077))
        rc = mlt_errf(-EPERM, err, errlen,
                  "%s: a secret key must be readable by its owner only (mode %04o): chmod 600 "
                  "it",
                  path, (unsigned)(st.st_mode & 07777));
    else if (st.st_size > MLT_CURVE_MAX_FILE)
        rc = mlt_errf(-EFBIG, err, errlen, "%s: larger than %d bytes", path, MLT_CURVE_MAX_FILE);
    if (rc) {
        close(fd);
        return rc;
    }
    char *buf = mlt_malloc((size_t)MLT_CURVE_MAX_FILE + 1);
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, (size_t)MLT_CURVE_MAX_FILE + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = mlt_errf(-errno, err, errlen, "%s: read: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
        if (n > MLT_CURVE_MAX_FILE) {
            rc = mlt_errf(-EFBIG, err, errlen, "%s: larger than %d bytes", path, MLT_CURVE_MAX_FILE);
            break;
        }
    }
    close(fd);
    if (rc) {
        mlt_free(buf);
        return rc;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        mlt_free(buf);
        return mlt_errf(-EINVAL, err, errlen, "%s: holds a NUL byte: not a key file", path);
    }
    *out = buf;
    return 0;
}

/* Iterates the lines of text: returns the next line (trimmed, NUL-terminated
 * in place) and its number, skipping blank and comment lines; NULL at the end.
 * A line longer than MLT_CURVE_MAX_LINE sets *too_long. */
static char *next_line(char **pos, int *lineno, int *too_long)
{
    while (**pos) {
        char *line = *pos;
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
            *pos = nl + 1;
        } else {
            *pos = line + strlen(line);
        }
        ++*lineno;
        if (strlen(line) > MLT_CURVE_MAX_LINE) {
            *too_long = 1;
            return line;
        }
        while (*line && isspace((unsigned char)*line))
            line++;
        size_t len = strlen(line);
        while (len && isspace((unsigned char)line[len - 1]))
            line[--len] = '\0';
        if (len && line[0] != '#')
            return line;
    }
    return NULL;
}

/* The one key a .key or .pub file holds, into out (41 bytes). */
static int read_one_key(const char *path, int secret, char *out, char *err, size_t errlen)
{
    char *text = NULL;
    int rc = slurp(path, secret, &text, err, errlen);
    if (rc)
        return rc;
    size_t total = strlen(text); /* next_line cuts it with NULs */
    char *pos = text;
    int lineno = 0, too_long = 0, found = 0;
    char *line;
    while ((line = next_line(&pos, &lineno, &too_long))) {
        if (too_long) {
            rc = mlt_errf(-EINVAL, err, errlen, "%s:%d: line longer than %d bytes", path, lineno,
                      MLT_CURVE_MAX_LINE);
            break;
        }
        if (found) {
            rc = mlt_errf(-EINVAL, err, errlen,
                      "%s:%d: a key file holds one key; this is a second line", path, lineno);
            break;
        }
        if (!decode_key(line, NULL)) {
            rc = mlt_errf(-EINVAL, err, errlen,
                      "%s:%d: not a CurveZMQ key (%d Z85 characters, as mltunerctl keygen writes)",
                      path, lineno, MLT_CURVE_Z85);
            break;
        }
        memcpy(out, line, MLT_CURVE_Z85 + 1);
        found = 1;
    }
    if (!rc && !found)
        rc = mlt_errf(-EINVAL, err, errlen, "%s: holds no key", path);
    /* the secret must not linger in freed memory */
    memset(text, 0, total);
    mlt_free(text);
    return rc;
}

int mlt_curve_load_secret(const char *path, mlt_curve_pair_t *out, char *err, size_t errlen)
{
    mlt_curve_pair_t p;
    int rc = read_one_key(path, 1, p.sec, err, errlen);
    if (rc)
        return rc;
    if (zmq_curve_public(p.pub, p.sec) < 0)
        return mlt_errf(-zmq_errno(), err, errlen, "%s: cannot derive the public key: %s", path,
                    zmq_strerror(zmq_errno()));
    *out = p;
    memset(&p, 0, sizeof p);
    return 0;
}

int mlt_curve_load_public(const char *path, char *out, char *err, size_t errlen)
{
    return read_one_key(path, 0, out, err, errlen);
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MLT_CURVE_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._@-", s[i]))
            return 0;
    return 1;
}

int mlt_curve_allow_add(mlt_curve_allow_t *a, const char *z85, const char *name)
{
    unsigned char bin[32];
    if (!decode_key(z85, bin))
        return -EINVAL;
    if (a->n >= MLT_CURVE_MAX_KEYS)
        return -E2BIG;
    a->key = mlt_realloc(a->key, (a->n + 1) * sizeof *a->key);
    a->name = mlt_realloc(a->name, (a->n + 1) * sizeof *a->name);
    memcpy(a->key[a->n], bin, 32);
    snprintf(a->name[a->n], sizeof a->name[a->n], "%s", name ? name : "");
    a->n++;
    return 0;
}

int mlt_curve_allow_load(const char *path, mlt_curve_allow_t **out, char *err, size_t errlen)
{
    char *text = NULL;
    int rc = slurp(path, 0, &text, err, errlen);
    if (rc)
        return rc;
    mlt_curve_allow_t *a = mlt_calloc(1, sizeof *a);
    char *pos = text, *line;
    int lineno = 0, too_long = 0;
    while (!rc && (line = next_line(&pos, &lineno, &too_long))) {
        if (too_long) {
            rc = mlt_errf(-EINVAL, err, errlen, "%s:%d: line longer than %d bytes", path, lineno,
                      MLT_CURVE_MAX_LINE);
            break;
        }
        char *name = line;
        while (*name && !isspace((unsigned char)*name))
            name++;
        if (*name) {
            *name++ = '\0';
            while (*name && isspace((unsigned char)*name))
                name++;
        }
        if (!decode_key(line, NULL))
            rc = mlt_errf(-EINVAL, err, errlen,
                      "%s:%d: '%.48s' is not a CurveZMQ public key (%d Z85 characters)", path,
                      lineno, line, MLT_CURVE_Z85);
        else if (*name && !name_ok(name))
            rc = mlt_errf(-EINVAL, err, errlen,
                      "%s:%d: the name after the key must be 1..%d of letters, digits and "
                      "\"._@-\"",
                      path, lineno, MLT_CURVE_MAX_NAME);
        else if (mlt_curve_allow_add(a, line, name) == -E2BIG)
            rc = mlt_errf(-E2BIG, err, errlen, "%s:%d: more than %d keys", path, lineno,
                      MLT_CURVE_MAX_KEYS);
    }
    mlt_free(text);
    if (rc) {
        mlt_curve_allow_destroy(&a);
        return rc;
    }
    *out = a;
    return 0;
}

const char *mlt_curve_allow_find(const mlt_curve_allow_t *a, const unsigned char key[32])
{
    for (size_t i = 0; a && i < a->n; i++)
        if (memcmp(a->key[i], key, 32) == 0)
            return a->name[i];
    return NULL;
}

size_t mlt_curve_allow_count(const mlt_curve_allow_t *a)
{
    return a ? a->n : 0;
}

void mlt_curve_allow_destroy(mlt_curve_allow_t **ap)
{
    if (!ap || !*ap)
        return;
    mlt_free((*ap)->key);
    mlt_free((*ap)->name);
    mlt_free(*ap);
    *ap = NULL;
}

/* Writes text to dir/name with mode, refusing to replace a file. */
static int write_new(const char *path, const char *text, mode_t mode, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return mlt_errf(-errno, err, errlen, "%s: cannot create: %s%s", path, strerror(errno),
                    errno == EEXIST ? " (remove it first: keys are never overwritten)" : "");
    int rc = 0;
    size_t len = strlen(text);
    if (fchmod(fd, mode) < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
        rc = mlt_errf(-errno, err, errlen, "%s: write: %s", path, strerror(errno));
    if (close(fd) < 0 && !rc)
        rc = mlt_errf(-errno, err, errlen, "%s: close: %s", path, strerror(errno));
    if (rc)
        unlink(path);
    return rc;
}

int mlt_curve_keygen(const char *dir, const char *name, char *err, size_t errlen)
{
    if (!name_ok(name) || strchr(name, '@') || name[0] == '.')
        return mlt_errf(-EINVAL, err, errlen,
                    "key name '%.80s' must be 1..%d of letters, digits and \"._-\", not starting "
                    "with '.'",
                    name, MLT_CURVE_MAX_NAME);
    if (!mlt_curve_available())
        return mlt_errf(-ENOTSUP, err, errlen, "this libzmq was built without CURVE (libsodium)");
    mlt_curve_pair_t p;
    if (zmq_curve_keypair(p.pub, p.sec) < 0)
        return mlt_errf(-zmq_errno(), err, errlen, "zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    char kpath[4096], ppath[4096], text[256];
    if ((size_t)snprintf(kpath, sizeof kpath, "%s/%s.key", dir, name) >= sizeof kpath ||
        (size_t)snprintf(ppath, sizeof ppath, "%s/%s.pub", dir, name) >= sizeof ppath)
        return mlt_errf(-ENAMETOOLONG, err, errlen, "%s: directory name too long", dir);
    snprintf(text, sizeof text,
             "# mltuner CurveZMQ secret key '%s': keep it private (mode 0600)\n%s\n", name, p.sec);
    int rc = write_new(kpath, text, 0600, err, errlen);
    memset(text, 0, sizeof text);
    memset(p.sec, 0, sizeof p.sec);
    if (rc)
        return rc;
    snprintf(text, sizeof text,
             "# mltuner CurveZMQ public key '%s' (for authorized_keys: the key, then the name)\n"
             "%s\n",
             name, p.pub);
    rc = write_new(ppath, text, 0644, err, errlen);
    if (rc)
        unlink(kpath);
    return rc;
}

int mlt_curve_server_socket(void *sock, const mlt_curve_pair_t *me)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, me->sec, MLT_CURVE_Z85 + 1) < 0)
        return -zmq_errno();
    return 0;
}

int mlt_curve_client_socket(void *sock, const mlt_curve_client_t *keys)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, keys->server, MLT_CURVE_Z85 + 1) < 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, keys->me.pub, MLT_CURVE_Z85 + 1) < 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, keys->me.sec, MLT_CURVE_Z85 + 1) < 0)
        return -zmq_errno();
    return 0;
}
