/* check_optim.h - shared by the optim suite's files: check_optim.c (the step
 * rules, names, finiteness, the suite) and check_optim_avg.c (the averaging
 * rules: sf-sgd, sf-adamw, update.average, warm-up). */
#ifndef MLT_CHECK_OPTIM_H
#define MLT_CHECK_OPTIM_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/optim.h"

/* Relative tolerance. Values smaller than CO_SCALE_FLOOR times the largest
 * magnitude their array has held so far (over all elements and steps) are
 * compared against that floor instead: where float cancellation brings a value
 * near zero (momentum, first moments), its error is set by the size of the
 * terms that cancelled, so a pure relative test would be meaningless. */
#define CO_RTOL        1e-5
#define CO_SCALE_FLOOR 1e-1

/* Array lengths every comparison runs: the vectorised body, the scalar tail,
 * and a tail-only call. */
#define CO_N_LENGTHS 3
extern const size_t co_lengths[CO_N_LENGTHS];

/* Deterministic uniform floats in [lo, hi). */
float co_rnd(uint32_t *seed, float lo, float hi);

/* calloc that fails the test instead of returning NULL */
void *co_xcalloc(size_t n, size_t size);

/* Asserts got[i] ~ want[i] for i < n (see CO_RTOL). *scale carries the
 * largest |want| seen so far for this array; start it at 0. */
void co_assert_close(const char *what, const float *got, const double *want, size_t n, int step,
                     double *scale);

/* mlt_hyper_default() with lr, momentum and weight decay set */
mlt_hyper_t co_hyper(float lr, float momentum, float wd);

/* One step of a step rule (sgd ... adadelta) in double, straight from the
 * formulas in optim.h, at rate hp->lr. s holds the state arrays (s[0..n) and
 * s[n..2n): 2n doubles whatever the rule). t is Adam's 1-based step. */
void co_ref_step(mlt_rule_t rule, const mlt_hyper_t *hp, double *w, double *s, const float *g,
                 size_t n, uint64_t t);

/* the TCases of check_optim_avg.c: "sf-sgd", "sf-adamw", "restart",
 * "schedule", "average" */
void co_avg_tcases(Suite *s);

#endif
