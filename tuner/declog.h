/* declog.h - writing the decision log (decisions.jsonl): one JSON object per
 * line with "t", "event" and "branch" first. Shared by the tuning logics. */
#ifndef MLT_DECLOG_H
#define MLT_DECLOG_H

#include <stdint.h>
#include <stdio.h>

#include "tuner/setting.h"

/* {"t":t,"event":event,"branch":branch[,fields]} where fields is a printf
 * format for the rest of the object (no braces; may be NULL). f may be NULL. */
void mlt_declog(FILE *f, double t, const char *event, uint32_t branch, const char *fields, ...)
    __attribute__((format(printf, 5, 6)));
/* The same with "tunables":{...} from s, extra fields (may be NULL) and a reason
 * (may be NULL). */
void mlt_declog_setting(FILE *f, double t, const char *event, uint32_t branch,
                        const mlt_job_t *job, const mlt_setting_t *s, const char *extra,
                        const char *reason);
/* A JSON number, or null for NaN/Inf; b has room for 32 bytes. */
const char *mlt_declog_num(char *b, double v);

#endif
