/* declog.c - see declog.h. A write that fails is not reported here: the
 * stream is the daemon's outfile (common/outfile.h), which keeps the first
 * error for the coordinator to fail the job with. */
#include "tuner/declog.h"

#include <math.h>
#include <stdarg.h>

#include "common/json.h"

void mlt_declog(FILE *f, double t, const char *event, uint32_t branch, const char *fields, ...)
{
    if (!f)
        return;
    fprintf(f, "{\"t\":%.3f,\"event\":\"%s\",\"branch\":%u", t, event, branch);
    if (fields && *fields) {
        fputc(',', f);
        va_list ap;
        va_start(ap, fields);
        vfprintf(f, fields, ap);
        va_end(ap);
    }
    fputs("}\n", f);
    fflush(f);
}

void mlt_declog_setting(FILE *f, double t, const char *event, uint32_t branch,
                        const mlt_job_t *job, const mlt_setting_t *s, const char *extra,
                        const char *reason)
{
    if (!f)
        return;
    fprintf(f, "{\"t\":%.3f,\"event\":\"%s\",\"branch\":%u,\"tunables\":", t, event, branch);
    mlt_setting_json(job, s, f);
    if (extra && *extra)
        fprintf(f, ",%s", extra);
    if (reason) {
        char js[1024];
        fprintf(f, ",\"reason\":\"%s\"", mlt_json_str(js, sizeof js, reason));
    }
    fputs("}\n", f);
    fflush(f);
}

const char *mlt_declog_num(char *b, double v)
{
    if (isfinite(v))
        snprintf(b, 32, "%.6g", v);
    else
        snprintf(b, 32, "null");
    return b;
}
