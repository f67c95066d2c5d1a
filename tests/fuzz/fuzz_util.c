/* fuzz_util.c - see fuzz_util.h. */
#include "fuzz_util.h"

#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_TAGS 4

static struct {
    const char *tag; /* borrowed: a string literal of the caller */
    char path[64];
} tmp[MAX_TAGS];
static int n_tmp;

void fuzz_remove_files(void)
{
    for (int i = 0; i < n_tmp; i++)
        unlink(tmp[i].path);
}

const char *fuzz_tmp_path(const char *tag)
{
    for (int i = 0; i < n_tmp; i++)
        if (strcmp(tmp[i].tag, tag) == 0)
            return tmp[i].path;
    fuzz_assert(n_tmp < MAX_TAGS);
    if (n_tmp == 0)
        atexit(fuzz_remove_files);
    tmp[n_tmp].tag = tag;
    int n = snprintf(tmp[n_tmp].path, sizeof tmp[n_tmp].path, "/tmp/mlt-fuzz-%s-%ld", tag,
                     (long)getpid());
    fuzz_assert(n > 0 && (size_t)n < sizeof tmp[n_tmp].path);
    return tmp[n_tmp++].path;
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

int fuzz_is_gzip(const uint8_t *data, size_t size)
{
    return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

int fuzz_gunzip_exact(const uint8_t *data, size_t size, size_t max, uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!fuzz_is_gzip(data, size) || size > UINT32_MAX)
        return 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return 0;
    uint8_t *buf = malloc(max + 1);
    fuzz_assert(buf != NULL);
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)size;
    z.next_out = buf;
    z.avail_out = (uInt)(max + 1); /* one spare byte: filling it means "more than max" */
    int zr = inflate(&z, Z_FINISH);
    int whole = zr == Z_STREAM_END && z.avail_in == 0 && z.total_out <= max;
    size_t n = z.total_out;
    inflateEnd(&z);
    if (!whole) {
        free(buf);
        return 0;
    }
    *out = buf;
    *outlen = n;
    return 1;
}

void fuzz_check_message(const char *err, size_t errlen, const char *prefix)
{
    if (!memchr(err, '\0', errlen)) {
        fprintf(stderr, "error message not NUL-terminated within %zu bytes\n", errlen);
        abort();
    }
    int ok = err[0] != '\0' && !strchr(err, '\n');
    if (ok && prefix) {
        size_t n = strlen(prefix);
        ok = strncmp(err, prefix, n) == 0 && err[n] == ':';
    }
    if (!ok) {
        fprintf(stderr, "bad error message (empty, several lines, or not \"%s:...\"): \"%s\"\n",
                prefix ? prefix : "", err);
        abort();
    }
}

static int verdict = -1;

void fuzz_verdict(int accepted)
{
    verdict = accepted ? 1 : 0;
}

int fuzz_take_verdict(void)
{
    int v = verdict;
    verdict = -1;
    return v;
}
