/* cpu.c - the CPU kernels (see cpu.h): kernels/cpu_impl.h instantiated for
 * float and for double, plus the OpenBLAS core check.
 *
 * Layout choice: NHWC, because with the channels of a pixel contiguous an
 * im2col row is k runs of k*c contiguous floats (one memcpy per patch row),
 * and a convolution over a chunk of images is one GEMM whose output is
 * already NHWC. */
#include "kernels/cpu.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define REAL       float
#define R(name)    name
#define CBLAS_GEMM cblas_sgemm
#define REXP       expf
#define RLOG       logf
#include "kernels/cpu_impl.h"
#undef REAL
#undef R
#undef CBLAS_GEMM
#undef REXP
#undef RLOG

#define REAL       double
#define R(name)    name##_f64
#define CBLAS_GEMM cblas_dgemm
#define REXP       exp
#define RLOG       log
#include "kernels/cpu_impl.h"
#undef REAL
#undef R
#undef CBLAS_GEMM
#undef REXP
#undef RLOG

const char *mlt_cpu_blas_core(void)
{
    return openblas_get_corename();
}

/* OpenBLAS x86-64 cores that use AVX2 or AVX-512 kernels. */
static const char *const wide_cores[] = {
    "haswell", "zen", "skylakex", "cooperlake", "sapphirerapids",
};

const char *mlt_cpu_blas_better_core(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const char *core = openblas_get_corename();
    if (core == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof wide_cores / sizeof wide_cores[0]; i++)
        if (strcasecmp(core, wide_cores[i]) == 0)
            return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return NULL;
}
