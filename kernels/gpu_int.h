/* gpu_int.h - PRIVATE to kernels/gpu*.cu: the context's body and the error
 * helpers the .cu files share. CUDA C++ only (it includes the CUDA headers);
 * C code sees kernels/gpu.h alone. */
#ifndef MLT_GPU_INT_H
#define MLT_GPU_INT_H

#include "kernels/gpu.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <errno.h>
#include <stdio.h>

/* Bytes of the cuBLAS workspace: cuBLAS asks for 32 MiB on Hopper; given
 * explicitly, GEMMs never allocate while a graph is being captured. */
#define MLT_GPU_BLAS_WS ((size_t)32 << 20)

struct mlt_gpu {
    int device;              /* CUDA device ordinal */
    int cc;                  /* compute capability x 10 */
    char name[256];          /* the device's name */
    cudaStream_t stream;     /* every op runs here, in order */
    cublasHandle_t blas;     /* bound to stream, host pointer mode */
    cudnnHandle_t dnn;       /* bound to stream */
    void *blas_ws;           /* MLT_GPU_BLAS_WS bytes for cuBLAS */
    bool tf32;               /* conv plans may use TF32 tensor cores */
    bool capturing;          /* between capture_begin and capture_end */
    cudaEvent_t marks[MLT_GPU_MARKS]; /* mlt_gpu_mark; NULL until first used */
    char err[512];           /* the last error ("" when none) */
};

/* Records a failed call ("what: status name: text") in g->err and returns
 * the -errno for it: -ENOMEM for an allocation, else -EIO. */
int mlt_gpu_fail_cuda_(mlt_gpu_t *g, cudaError_t e, const char *what);
int mlt_gpu_fail_blas_(mlt_gpu_t *g, cublasStatus_t s, const char *what);
int mlt_gpu_fail_dnn_(mlt_gpu_t *g, cudnnStatus_t s, const char *what);
/* Records a message of ours; returns rc. */
int mlt_gpu_fail_(mlt_gpu_t *g, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Checks a kernel launch (cudaGetLastError); 0 or -EIO naming `what`. */
int mlt_gpu_launched_(mlt_gpu_t *g, const char *what);

#define GPU_CUDA(g, what, call)                                                                    \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return mlt_gpu_fail_cuda_((g), e_, (what));                                            \
    } while (0)
#define GPU_BLAS(g, what, call)                                                                    \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return mlt_gpu_fail_blas_((g), s_, (what));                                            \
    } while (0)
#define GPU_DNN(g, what, call)                                                                     \
    do {                                                                                           \
        cudnnStatus_t s_ = (call);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                            \
            return mlt_gpu_fail_dnn_((g), s_, (what));                                             \
    } while (0)

#endif
