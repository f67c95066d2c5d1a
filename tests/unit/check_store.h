/* check_store.h - shared by the store suite's files: check_store.c (the
 * helpers below, jobs, forks, refcounts, bounds, the suite),
 * check_store_update.c (clocks, updates, out of memory)
 * and check_store_avg.c (the averaging rules: what a branch reads, their
 * state under copy-on-write, write). */
#ifndef MLT_CHECK_STORE_H
#define MLT_CHECK_STORE_H

#include <check.h>
#include <stdint.h>

#include "daemon/store.h"

#define CF       4u           /* floats per chunk in every test */
#define NO_LIMIT (1ull << 40) /* a memory_limit no test reaches */
#define TOL      1e-5

/* One table of 10 floats: chunks of 4, 4 and 2 floats. */
extern const mlt_table_spec_t T10[1];

/* Asserts chunk k of branch id holds exactly want[0..n) (values written, or
 * exact by construction). */
void cs_expect_chunk(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k, const float *want,
                     uint32_t n);

/* Default hyperparameters with lr and momentum, staleness 0. */
mlt_tunables_t cs_tun(float lr, float momentum);

/* New store with job "job" (rank 0 of 1). */
mlt_store_t *cs_store_with(uint64_t limit, mlt_rule_t rule, const mlt_table_spec_t *tabs,
                           uint32_t n_tabs, uint32_t n_workers);

/* A TRAIN root branch, and a TRAIN fork, with cs_tun(lr, momentum); the test
 * fails unless they succeed. */
void cs_create(mlt_store_t *st, uint32_t id, float lr, float momentum);
void cs_fork(mlt_store_t *st, uint32_t child, uint32_t parent, float lr, float momentum);

/* The live branch id; the test fails if there is none. */
mlt_branch_t *cs_br(mlt_store_t *st, uint32_t id);

/* mlt_store_write / mlt_store_apply of chunk k that must succeed. */
void cs_write(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k, const float *v);
void cs_apply(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k, const float *g);

/* Copies what a pull of branch id reads from chunk k into out (chunk_len
 * floats), through mlt_store_chunk_get as a pull reply does. */
void cs_read_chunk(mlt_store_t *st, uint32_t id, uint32_t table, uint32_t k, float *out);

/* got[i] within TOL * (1 + |want[i]|) of want[i], for i < n */
void cs_expect_near(const float *got, const double *want, uint32_t n, const char *what);

/* the TCases of check_store_avg.c: "average" */
void cs_avg_tcases(Suite *s);
/* check_store_update.c's TCases: "clock", "update", "oom" */
void cs_update_tcases(Suite *s);

#endif
