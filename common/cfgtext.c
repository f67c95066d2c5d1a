/* cfgtext.c - see cfgtext.h. */
#include "common/cfgtext.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"

/* Skips the number at *pp (sign, decimal or 0x digits, then an L suffix or a
 * float's '.' and exponent). true when it is an integer without L that
 * libconfig 1.5 would wrap to 32 bits. */
static bool scan_number(const char **pp)
{
    const char *p = *pp;
    bool neg = *p == '-';
    p += *p == '-' || *p == '+';
    bool hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    unsigned long long v = 0, lim = hex ? 0xFFFFFFFFULL : neg ? 2147483648ULL : 2147483647ULL;
    bool big = false;
    for (p += hex ? 2 : 0; hex ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p); p++) {
        unsigned d = isdigit((unsigned char)*p) ? (unsigned)(*p - '0')
                                                : (unsigned)((*p | 0x20) - 'a' + 10);
        v = v * (hex ? 16 : 10) + d; /* may wrap once big; big stays set */
        big |= v > lim;
    }
    bool is_float = !hex && (*p == '.' || *p == 'e' || *p == 'E');
    while (is_float && *p && (isdigit((unsigned char)*p) || strchr(".eE+-", *p)))
        p++;
    bool int64 = !is_float && *p == 'L';
    p += int64;
    *pp = p;
    return big && !is_float && !int64;
}

int mlt_cfgtext_check(const char *t, const char *path, bool allow_include, const char *hint,
                      char *err, size_t errlen)
{
    int line = 1;
    for (const char *p = t; *p;) {
        if (*p == '\n') {
            line++;
            p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; *p && !(p[0] == '*' && p[1] == '/'); p++)
                line += *p == '\n';
            p += *p ? 2 : 0;
        } else if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                line += *p == '\n';
                p += *p == '\\' && p[1];
            }
            p += *p ? 1 : 0;
        } else if (!allow_include && strncmp(p, "@include", 8) == 0) {
            snprintf(err, errlen,
                     "%s:%d: @include is not allowed in a job file (its text is sent to the "
                     "workers whole)",
                     path, line);
            return -EINVAL;
        } else if (isalpha((unsigned char)*p) || *p == '*' || *p == '@') {
            while (*p && (isalnum((unsigned char)*p) || strchr("-_*@", *p)))
                p++; /* a name: its digits are not numbers */
        } else if (isdigit((unsigned char)*p) || *p == '.' ||
                   ((*p == '-' || *p == '+') && (isdigit((unsigned char)p[1]) || p[1] == '.'))) {
            const char *b = p;
            if (scan_number(&p)) {
                snprintf(err, errlen, "%s:%d: integer %.*s does not fit in 32 bits; write %.*sL (or %s)",
                         path, line, (int)(p - b), b, (int)(p - b), b, hint);
                return -EINVAL;
            }
        } else {
            p++;
        }
    }
    return 0;
}

int mlt_cfgtext_read(const char *path, size_t max, char **textp, size_t *lenp, char *err,
                     size_t errlen)
{
    int rc;
    *textp = NULL;
    FILE *fp = fopen(path, "r");
    if (!fp) {
        rc = -errno;
        goto fail_open;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        rc = -errno;
        goto fail_read;
    }
    if (S_ISDIR(st.st_mode)) { /* fopen takes a directory; it would read as empty */
        rc = -EISDIR;
        goto fail_read;
    }
    size_t cap = 4096, len = 0, n;
    char *text = mlt_malloc(cap);
    while ((n = fread(text + len, 1, cap - len - 1, fp)) > 0) {
        len += n;
        if (len > max) {
            mlt_free(text);
            fclose(fp);
            return -EFBIG;
        }
        if (len + 1 == cap)
            text = mlt_realloc(text, cap *= 2);
    }
    if (ferror(fp)) {
        rc = -EIO;
        mlt_free(text);
        goto fail_read;
    }
    fclose(fp);
    text[len] = '\0';
    *textp = text;
    *lenp = len;
    return 0;
fail_read:
    fclose(fp);
fail_open:
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
    return rc;
}

void mlt_cfgtext_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}
