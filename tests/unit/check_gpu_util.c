/* check_gpu_util.c - what the GPU suite's files share: the context, the
 * buffers a test allocates (released by every TCase's checked teardown),
 * seeded random inputs and the comparisons with their tolerances. See
 * check_gpu.c. */
#include "check_gpu_util.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mlt_gpu_t *gpu; /* the suite's context (main), TF32 off */

/* ---- what a test allocates, released by the fixture ---- */

typedef struct res {
    res_kind_t kind; /* how to free it */
    void *p;
} res_t;

#define MAX_RES 1024
static res_t res[MAX_RES];
static size_t n_res;

void *track(res_kind_t kind, void *p)
{
    ck_assert_msg(n_res < MAX_RES, "a test holds more than %d buffers", MAX_RES);
    res[n_res++] = (res_t){.kind = kind, .p = p};
    return p;
}

/* Frees everything tracked, newest first, after ending a capture that a
 * failed assertion left open. The checked teardown of every TCase; loops call
 * it between their cases to keep the memory of one case only. */
void release_all(void)
{
    if (mlt_gpu_capturing(gpu)) {
        mlt_gpu_graph_t *gr = NULL;
        mlt_gpu_capture_end(gpu, &gr);
        mlt_gpu_graph_destroy(&gr);
    }
    mlt_gpu_sync(gpu);
    while (n_res > 0) {
        res_t *r = &res[--n_res];
        switch (r->kind) {
        case R_HOST: free(r->p); break;
        case R_DEV: mlt_gpu_free(gpu, r->p); break;
        case R_PINNED: mlt_gpu_host_free(gpu, r->p); break;
        case R_CONV: {
            mlt_gpu_conv_t *c = r->p;
            mlt_gpu_conv_destroy(gpu, &c);
            break;
        }
        case R_GRAPH: {
            mlt_gpu_graph_t *gr = r->p;
            mlt_gpu_graph_destroy(&gr);
            break;
        }
        case R_CPU_MODEL: {
            mlt_model_t *m = r->p;
            mlt_model_destroy(&m);
            break;
        }
        case R_GPU_MODEL: {
            mlt_gpu_model_t *m = r->p;
            mlt_gpu_model_destroy(&m);
            break;
        }
        }
    }
}

/* ---- random inputs ---- */

static uint64_t rng_state = 1;

void reseed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 3;
}

uint64_t rnext(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Uniform in [lo, hi). */
double urand(double lo, double hi)
{
    return lo + (hi - lo) * (double)(rnext() >> 11) * 0x1.0p-53;
}

/* ---- host and device buffers (all tracked) ---- */

void *hnew(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    return track(R_HOST, p);
}

float *frand(size_t n, double lo, double hi)
{
    float *x = hnew(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)urand(lo, hi);
    return x;
}

float *ffill(size_t n, float v)
{
    float *x = hnew(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = v;
    return x;
}

float *fdup(const float *x, size_t n)
{
    float *y = hnew(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}

void *pinned_new(size_t bytes)
{
    void *p = mlt_gpu_host_malloc(gpu, bytes);
    ck_assert_msg(p != NULL, "mlt_gpu_host_malloc(%zu): %s", bytes, mlt_gpu_error(gpu));
    return track(R_PINNED, p);
}

void *dnew(size_t bytes)
{
    void *d = mlt_gpu_malloc(gpu, bytes);
    ck_assert_msg(d != NULL, "mlt_gpu_malloc(%zu): %s", bytes, mlt_gpu_error(gpu));
    return track(R_DEV, d);
}

/* A device copy of bytes of h. */
void *dput(const void *h, size_t bytes)
{
    void *d = dnew(bytes);
    GPU_OK(mlt_gpu_upload(gpu, d, h, bytes));
    return d;
}

float *dputf(const float *h, size_t n)
{
    return dput(h, n * sizeof *h);
}

/* bytes of device memory d into h, once everything issued before has run. */
void dget(void *h, const void *d, size_t bytes)
{
    GPU_OK(mlt_gpu_download(gpu, h, d, bytes));
    GPU_OK(mlt_gpu_sync(gpu));
}

float *dgetf(const float *d, size_t n)
{
    float *h = hnew(n * sizeof *h);
    dget(h, d, n * sizeof *h);
    return h;
}

/* ---- comparisons ---- */

/* a and b agree within tol, and a NaN only matches a NaN: NaN against a
 * number fails whatever tol is, and two NaNs match (where the CPU says NaN,
 * the GPU must too). Infinities must be equal. */
bool close_enough(double a, double b, double tol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b))
        return a == b;
    return fabs(a - b) <= tol;
}

/* The same float: identical bits (so -0 is not 0), or both NaN (a NaN's sign
 * and payload are no contract: the GPU makes its own canonical NaN). */
static bool same_float(float a, float b)
{
    uint32_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    return ua == ub || (isnan(a) && isnan(b));
}

/* The element checks look for the first mismatch and assert once: a passing
 * ck_assert writes to Check's log, and millions of them took most of the
 * suite's time. */
void expect_bits(const float *got, const float *want, size_t n, const char *what)
{
    size_t i = 0;
    while (i < n && same_float(got[i], want[i]))
        i++;
    if (i < n)
        ck_abort_msg("%s[%zu]: GPU %a, CPU %a", what, i, (double)got[i], (double)want[i]);
}

void expect_close(const float *got, const float *want, size_t n, double tol, const char *what)
{
    size_t i = 0;
    while (i < n && close_enough(got[i], want[i], tol))
        i++;
    if (i < n)
        ck_abort_msg("%s[%zu]: GPU %.9g, CPU %.9g (tolerance %.3g)", what, i, (double)got[i],
                     (double)want[i], tol);
}

/* The largest |x[i]|, NaN skipped. */
double max_abs(const float *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m)
            m = fabs(x[i]);
    return m;
}

/* The tolerance of a float sum of k terms of magnitude <= term that the CPU
 * and the GPU add in different orders (OpenBLAS's and cuBLAS's blockings,
 * cuDNN's algorithms, a GEMV, atomics). Each is off the exact sum by at most
 * about eps * k * term (eps = 6e-8) and typically eps * sqrt(k) * term; 1e-4 *
 * sqrt(k) * term is over 10 times the former for the k <= 2e4 used here,
 * while a wrong index, transpose, tap or missed term is off by about a whole
 * term. */
double sum_tol(size_t k, double term)
{
    return 1e-4 * sqrt((double)(k ? k : 1)) * term;
}

/* Units in the last place between two finite floats (their distance in the
 * ordered integer line of float bit patterns). */
static uint64_t ulps_apart(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    int64_t la = ia < 0 ? (int64_t)INT32_MIN - ia : ia, lb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return (uint64_t)(la > lb ? la - lb : lb - la);
}

/* The optimizer's tolerance. The kernels do optim.c's float arithmetic in its
 * order without contraction (-fmad=false), sqrtf and division are correctly
 * rounded on both sides, and Adam's corrections are the same double
 * computation: the results should be identical. Allowed: 4 ulps of the
 * element, or, for an element an update cancelled to near 0, 1e-6 of the
 * array's largest magnitude (a few ulps of the operands). NaN as
 * close_enough. */
void expect_ulps(const float *got, const float *want, size_t n, const char *what)
{
    const double floor_tol = 1e-6 * max_abs(want, n);
    for (size_t i = 0; i < n; i++) {
        const float a = got[i], b = want[i];
        bool ok = same_float(a, b) || (isfinite(a) && isfinite(b) &&
                                       (ulps_apart(a, b) <= 4 || fabs((double)a - b) <= floor_tol));
        if (!ok)
            ck_abort_msg("%s[%zu]: GPU %a, CPU %a", what, i, (double)a, (double)b);
    }
}

/* A TCase whose checked teardown releases what its tests allocated. */
TCase *add_tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, NULL, release_all);
    suite_add_tcase(s, tc);
    return tc;
}
