/* jobfile_int.h - what jobfile.c, jobfile_check.c and jobfile_write.c share:
 * the job's key table (rows of the key-table engine, common/keytable.h) and
 * the job's own parts that the table's rows call: string checks, the cnn
 * layer spec, the checks between keys. Private to common/jobfile*.c. */
#ifndef MLT_JOBFILE_INT_H
#define MLT_JOBFILE_INT_H

#include "common/jobfile.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/keytable.h"

#define OFF(f)  offsetof(mlt_job_t, f)
#define TOFF(f) offsetof(mlt_tunable_t, f)

/* The keys, in the order mlt_job_format writes them: a group's members follow
 * its row; the members of a tunable are in_elem rows "tunables.*.min" whose
 * offsets are in mlt_tunable_t (jobfile.c). */
extern const mlt_kt_key_t mlt_jobk_keys[];
extern const mlt_kt_table_t mlt_jobk_table;

extern const char *const mlt_jobk_model_names[];
extern const char *const mlt_jobk_format_names[];

/* jobfile_check.c */
extern const mlt_kt_spec_t mlt_jobk_cnn; /* model.cnn entries: "conv5x5x32", "pool2", "fc256" */
int mlt_jobk_check_name(const char *subj, const char *s, char *why, size_t whylen);
int mlt_jobk_check_path(const char *subj, const char *s, char *why, size_t whylen);
int mlt_jobk_check_path_opt(const char *subj, const char *s, char *why, size_t whylen);
/* Everything between keys, and every key's bounds again. Messages point at
 * the file when p has one (p may be NULL). 0 or -EINVAL. */
int mlt_jobk_validate(const mlt_job_t *job, const mlt_kt_ctx_t *p, char *err, size_t errlen);

#endif
