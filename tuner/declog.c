/* declog.c - see declog.h. */
#include "tuner/declog.h"

#include <stdarg.h>

void mlt_declog_begin(mlt_json_t *j, double t, const char *event, uint32_t branch)
{
    mlt_json_begin(j);
    mlt_json_fixed(j, "t", t, 3);
    mlt_json_str(j, "event", event);
    mlt_json_uint(j, "branch", branch);
}

void mlt_declog_timing(mlt_json_t *j, ...)
{
    va_list ap;
    va_start(ap, j);
    mlt_json_arr(j, "timing_dependent");
    for (const char *name; (name = va_arg(ap, const char *));)
        mlt_json_str(j, NULL, name);
    mlt_json_end(j);
    va_end(ap);
}

void mlt_declog_end(mlt_json_t *j, FILE *f)
{
    mlt_json_write(j, f);
}
