/* fpmode.h - the floating-point mode mltunerd and mltuner-worker run in.
 *
 * Denormal floats (|x| < FLT_MIN) take a slow microcode path on x86: a
 * network whose activations die out to tiny values made epochs 3-4x slower.
 * The programs therefore flush them to zero, which changes results only below
 * FLT_MIN. Threads inherit the mode of the thread that creates them, so it is
 * set first thing in main(), before any thread exists. */
#ifndef MLT_FPMODE_H
#define MLT_FPMODE_H

/* Sets flush-to-zero (denormal results become 0) and denormals-are-zero
 * (denormal inputs read as 0) for the calling thread: the MXCSR FTZ and DAZ
 * bits (0x8040) where SSE is available, a no-op elsewhere. Idempotent. */
void mlt_fpmode_flush_denormals(void);

#endif
