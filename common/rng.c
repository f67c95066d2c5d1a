/* rng.c - SplitMix64 and what is built on it; see rng.h. */
#include "common/rng.h"

#include <assert.h>
#include <math.h>

#define GOLDEN 0x9E3779B97F4A7C15ull
#define TWO_PI 6.283185307179586476925286766559

/* Stafford's Mix13 finaliser: a bijection on 64 bits with full avalanche. */
static uint64_t fmix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t mlt_rng_next(uint64_t *state)
{
    *state += GOLDEN;
    return fmix(*state);
}

double mlt_rng_uniform(uint64_t *state)
{
    return (double)(mlt_rng_next(state) >> 11) * 0x1.0p-53;
}

double mlt_rng_normal(uint64_t *state)
{
    /* u1 in (0, 1] so the log is finite */
    double u1 = 1.0 - mlt_rng_uniform(state);
    double u2 = mlt_rng_uniform(state);
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

uint32_t mlt_rng_below(uint64_t *state, uint32_t n)
{
    assert(n > 0);
    uint64_t m = (mlt_rng_next(state) >> 32) * (uint64_t)n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n; /* 2^32 mod n */
        while (low < threshold) {
            m = (mlt_rng_next(state) >> 32) * (uint64_t)n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

uint64_t mlt_rng_mix(uint64_t seed, uint64_t tag)
{
    return fmix(seed ^ fmix(tag + GOLDEN));
}
