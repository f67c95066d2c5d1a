/* check_data.h - shared by the data suite's files: check_data.c (these
 * helpers, IDX files, their errors, splits, the suite) and check_data_sets.c
 * (the sampler, ratings files, synthetic ratings). */
#ifndef MLT_CHECK_DATA_H
#define MLT_CHECK_DATA_H

#include <check.h>
#include <stddef.h>

#include "worker/data.h"

#define ERRLEN 512

/* the suite's temporary directory (made by main, removed at exit) */
extern char tmpdir[256];

/* Writes data to tmpdir/name (gzipped if gz); its path into path (PATH_MAX). */
void write_file(const char *name, const void *data, size_t n, int gz, char *path);

/* Asserts rc == want and that msg contains every string in the NULL-terminated
 * list (the file name, "offset N", ...). */
#define EXPECT_ERR(rc, want, msg, ...) expect_err_((rc), (want), (msg), __LINE__, __VA_ARGS__, NULL)
void expect_err_(int rc, int want, const char *msg, int line, ...);

/* check_data_sets.c's TCases: "sampler", "ratings", "synth" */
void cd_sets_tcases(Suite *s);

#endif
