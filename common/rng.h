/* rng.h - the project's one seeded pseudo-random generator.
 *
 * SplitMix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number
 * generators", OOPSLA 2014; the reference is Vigna's splitmix64.c): the state is
 * one uint64_t, advanced by the golden-ratio increment 0x9E3779B97F4A7C15 and
 * hashed by the Stafford "Mix13" finaliser. It passes BigCrush, has period 2^64,
 * and any 64-bit value (0 included) is a valid seed. It is not cryptographic.
 *
 * Models, the data samplers and the synthetic ratings generator all draw from
 * it, so a job is reproducible from its seeds. The sequence for a seed is fixed
 * forever: tests and saved experiments depend on it, so do not change the
 * algorithm. A state belongs to one thread; to give each worker, epoch or table
 * its own stream, derive a seed with mlt_rng_mix(seed, tag).
 */
#ifndef MLT_RNG_H
#define MLT_RNG_H

#include <stdint.h>

/* Next 64 random bits; advances *state. */
uint64_t mlt_rng_next(uint64_t *state);

/* Uniform double in [0, 1), 53 bits of precision. */
double mlt_rng_uniform(uint64_t *state);

/* Standard normal N(0, 1) by the Box-Muller transform (two uniforms per call,
 * no cached second value, so the state alone says where a stream is). */
double mlt_rng_normal(uint64_t *state);

/* Uniform integer in [0, n) without modulo bias (Lemire's multiply-and-reject);
 * n must be > 0. */
uint32_t mlt_rng_below(uint64_t *state, uint32_t n);

/* A seed for an independent stream derived from (seed, tag): a hash, so nearby
 * tags (epoch 0, 1, 2 ...) give unrelated streams. Chain it for several tags:
 * mlt_rng_mix(mlt_rng_mix(seed, epoch), worker). */
uint64_t mlt_rng_mix(uint64_t seed, uint64_t tag);

#endif
