/* check_jobfile.h - shared by the jobfile suite's files: check_jobfile.c (the
 * helpers below, the shipped files, the suite), check_jobfile_keys.c (every
 * key), check_jobfile_errors.c (the errors a user sees) and
 * check_jobfile_set.c (mlt_job_set, parsing from a string). */
#ifndef MLT_CHECK_JOBFILE_H
#define MLT_CHECK_JOBFILE_H

#include <check.h>
#include <stddef.h>

#include "common/jobfile.h"

/* A minimal valid job: the error tests add to it. Two lines. */
#define JF_BASE "name = \"t\";\nmodel = { type = \"mlp\"; layers = [256]; };\n"

/* A new temporary file of n bytes of text; its path (caller drops it with
 * tmp_drop of testutil.h). */
char *jf_tmp_file(const char *text, size_t n);

/* Loads text from a temporary file; the test fails unless it loads. */
void jf_load_ok(const char *text, mlt_job_t *job);

/* The file must be refused with -EINVAL and exactly "PATH:LINE: exact"
 * ("PATH: exact" for line 0); the job stays zeroed. */
void jf_expect_error(const char *text, int line, const char *exact);

/* every field but text */
void jf_assert_job_eq(const mlt_job_t *a, const mlt_job_t *b);

/* mlt_job_format, parsed again, gives the same job */
void jf_assert_format_roundtrip(const mlt_job_t *job);

/* The documented key list: the first word of each line of
 * mlt_job_write_keys(), as a NULL-terminated array (caller frees with
 * jf_keys_free). */
char **jf_documented_keys(size_t *np);
void jf_keys_free(char **keys, size_t n);

/* Loads rel, a file under the source tree (conf/jobs/...); the test fails
 * unless it loads. */
void jf_load_shipped(const char *rel, mlt_job_t *job);

/* the TCases of the other files, added to the suite in this order */
void jf_keys_tcases(Suite *s);   /* "keys" (check_jobfile_keys.c) */
void jf_errors_tcases(Suite *s); /* "errors" (check_jobfile_errors.c) */
void jf_set_tcases(Suite *s);    /* "set", "string" (check_jobfile_set.c) */

#endif
