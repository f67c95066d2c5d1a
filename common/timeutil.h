/* timeutil.h - clocks. mlt_time_mono() for intervals and deadlines,
 * mlt_time_wall() for timestamps a person reads. Both in seconds. */
#ifndef MLT_TIMEUTIL_H
#define MLT_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

static inline double mlt_time_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The same clock in ns: system-wide, so stamps of two processes on one host
 * compare (the data path's timing, #15). */
static inline uint64_t mlt_time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double mlt_time_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
