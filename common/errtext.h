/* errtext.h - the error convention's text half: a fallible function returns
 * 0 or -errno, and says what was wrong in a caller's buffer. */
#ifndef MLT_ERRTEXT_H
#define MLT_ERRTEXT_H

#include <stddef.h>

/* Formats the message into err (when err and errlen are given) and returns
 * code, so that a check reads `return mlt_errf(-EINVAL, err, errlen, ...)`. */
int mlt_errf(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
