/* cfgtext.h - libconfig text below the key-table engine (common/keytable.c):
 * reading a bounded file, the checks libconfig 1.5 itself does not make, and
 * writing a string literal. Pure; thread-safe. */
#ifndef MLT_CFGTEXT_H
#define MLT_CFGTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Scans text (already accepted by libconfig) for an integer literal without
 * an L suffix beyond 32 bits, which libconfig 1.5 silently wraps (4296015872
 * becomes 1048576), and, unless allow_include, for @include. Comments,
 * strings and names are skipped. hint completes the big-integer message
 * ("a size string such as \"8G\""). Returns 0 or -EINVAL with
 * "path:line: what" in err. */
int mlt_cfgtext_check(const char *text, const char *path, bool allow_include, const char *hint,
                      char *err, size_t errlen);

/* Reads the whole file at path, at most max bytes, into a new NUL-terminated
 * buffer (*textp, caller frees with mlt_free; *lenp its length, which is
 * shorter than strlen only if the file holds a NUL). Returns 0; -EFBIG when the
 * file is longer than max (err untouched: the caller says why); other -errno
 * (-ENOENT, -EISDIR, -EIO ...) with "path: cannot open: why" in err. */
int mlt_cfgtext_read(const char *path, size_t max, char **textp, size_t *lenp, char *err,
                     size_t errlen);

/* Writes s to f as a libconfig string literal: quoted, with quotes and
 * backslashes escaped and control bytes as \xNN. */
void mlt_cfgtext_write_string(FILE *f, const char *s);

#endif
