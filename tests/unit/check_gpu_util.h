/* check_gpu_util.h - shared by the GPU suite's files (check_gpu.c: context,
 * dense layers, loss, convolution, mf, NaN; check_gpu_ops.c: pooling, gathers,
 * the rules, graphs; check_gpu_model.c: the models): see check_gpu_util.c. */
#ifndef MLT_CHECK_GPU_UTIL_H
#define MLT_CHECK_GPU_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/gpu.h"
#include "worker/model.h"
#include "worker/model_gpu.h"

extern mlt_gpu_t *gpu; /* the suite's context (main), TF32 off */

/* what a test allocates, released by the fixture */
typedef enum { R_HOST, R_DEV, R_PINNED, R_CONV, R_GRAPH, R_CPU_MODEL, R_GPU_MODEL } res_kind_t;

#define GPU_OK(call)                                                                               \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        ck_assert_msg(rc_ == 0, "%s = %d: %s", #call, rc_, mlt_gpu_error(gpu));                    \
    } while (0)

/* ratings (user, item, value) on the host and the device (mf) */
typedef struct ratings {
    uint32_t *users, *items;
    float *r;
    uint32_t *d_users, *d_items; /* the same on the device */
    float *d_r;
} ratings_t;

/* tracking: every buffer below is tracked; release_all() frees them all (the
 * checked teardown of every TCase add_tcase makes) */
void *track(res_kind_t kind, void *p);
void release_all(void);
TCase *add_tcase(Suite *s, const char *name);

/* seeded random inputs */
void reseed(uint64_t s);
uint64_t rnext(void);
double urand(double lo, double hi);

/* host (hnew, frand, ffill, fdup), pinned and device buffers, copies */
void *hnew(size_t bytes);
float *frand(size_t n, double lo, double hi);
float *ffill(size_t n, float v);
float *fdup(const float *x, size_t n);
void *pinned_new(size_t bytes);
void *dnew(size_t bytes);
void *dput(const void *h, size_t bytes);
float *dputf(const float *h, size_t n);
void dget(void *h, const void *d, size_t bytes);
float *dgetf(const float *d, size_t n);

/* comparisons, each with the tolerance check_gpu.c's head describes */
bool close_enough(double a, double b, double tol);
void expect_bits(const float *got, const float *want, size_t n, const char *what);
void expect_close(const float *got, const float *want, size_t n, double tol, const char *what);
double max_abs(const float *x, size_t n);
double sum_tol(size_t k, double term);
void expect_ulps(const float *got, const float *want, size_t n, const char *what);

/* the model TCase (check_gpu_model.c) */
void gpu_model_tcases(Suite *s);
/* check_gpu_ops.c's TCases: "pool", "data", "optim", "graph" */
void gpu_ops_tcases(Suite *s);

#endif
