/* declog.h - the decision log (decisions.jsonl): one JSON object per line
 * with "t", "event" and "branch" first, built with common/json.h. Shared by
 * the tuning logics and the coordinator.
 *
 *     mlt_json_t j;
 *     mlt_declog_begin(&j, now, "free", branch);
 *     mlt_json_str(&j, "reason", "tested");
 *     mlt_declog_end(&j, f);          {"t":1.234,"event":"free","branch":9,"reason":"tested"} */
#ifndef MLT_DECLOG_H
#define MLT_DECLOG_H

#include <stdint.h>
#include <stdio.h>

#include "common/json.h"
#include "tuner/setting.h"

/* Begins j as {"t":t,"event":event,"branch":branch (t as %.3f). */
void mlt_declog_begin(mlt_json_t *j, double t, const char *event, uint32_t branch);
/* "timing_dependent":[names...]: the fields a replay of the job cannot
 * reproduce (wall times and what follows from them). NULL ends the list. */
void mlt_declog_timing(mlt_json_t *j, ...) __attribute__((sentinel));
/* Writes the line to f (may be NULL: nothing) and frees j. A failed write is
 * not reported here: f is the daemon's outfile (common/outfile.h), which
 * keeps the first error for the coordinator to fail the job with. */
void mlt_declog_end(mlt_json_t *j, FILE *f);

#endif
