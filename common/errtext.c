/* errtext.c - see errtext.h. */
#include "common/errtext.h"

#include <stdarg.h>
#include <stdio.h>

int mlt_errf(int code, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
