/* fpmode.c - see fpmode.h. */
#include "common/fpmode.h"

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

/* OpenBLAS (when the program links it) starts its threads when it is loaded,
 * before main(): they do not inherit the mode set here. Its thread pool is
 * shut down so that the next BLAS call starts it again, from a thread that
 * has the mode (OpenBLAS does the same around fork()). Measured (#15): a
 * 2-thread sgemm on denormal inputs left the second thread's half of the
 * output denormal without this, none with it. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

void mlt_fpmode_flush_denormals(void)
{
#if defined(__SSE__)
    /* a dead network's tiny activations made epochs 3-4x slower: FTZ | DAZ */
    _mm_setcsr(_mm_getcsr() | 0x8040u);
#endif
    if (blas_thread_shutdown_)
        blas_thread_shutdown_();
}
