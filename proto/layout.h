/* layout.h - how a job's tables are cut into chunks and spread over shards.
 * Both the daemon and libmltuner compute it from the same inputs (table sizes,
 * chunk_floats, n_servers), so it is a stable mapping with nothing to exchange.
 *
 * Table t is cut into ceil(size/chunk_floats) chunks; the chunks of all tables,
 * in registration order, are numbered globally 0..G-1; shard s owns the
 * contiguous global range [s*G/S, (s+1)*G/S). A contiguous range keeps a pull
 * to one shard a handful of (table, chunk range) requests. */
#ifndef MLT_LAYOUT_H
#define MLT_LAYOUT_H

#include <stdint.h>

static inline uint64_t mlt_layout_chunks(uint64_t size, uint32_t chunk_floats)
{
    return (size + chunk_floats - 1) / chunk_floats;
}

/* Global chunk range [*lo, *hi) owned by shard s of n. */
static inline void mlt_layout_shard_range(uint64_t total_chunks, uint32_t n, uint32_t s,
                                          uint64_t *lo, uint64_t *hi)
{
    *lo = total_chunks * s / n;
    *hi = total_chunks * (s + 1) / n;
}

/* Intersection of a table's global chunks [tfirst, tfirst+tn) with a shard's
 * [lo, hi), as a table-local range [*first, *first+*count). count 0: none. */
static inline void mlt_layout_table_part(uint64_t tfirst, uint64_t tn, uint64_t lo, uint64_t hi,
                                         uint64_t *first, uint64_t *count)
{
    uint64_t a = tfirst > lo ? tfirst : lo;
    uint64_t b = tfirst + tn < hi ? tfirst + tn : hi;
    *first = a < b ? a - tfirst : 0;
    *count = a < b ? b - a : 0;
}

/* The shard-major layout of a client's shared-memory region (#15): for each
 * shard in rank order, for each table in order, that shard's chunks of the
 * table back to back, each such group starting at a multiple of 64 bytes. A
 * request for every table of one shard (PULL_ALL, STEP) names the offset of
 * that shard's first group; the shard finds each table's group from there by
 * this rule alone. */
static inline uint64_t mlt_layout_group_start(uint64_t pos)
{
    return (pos + 63) & ~(uint64_t)63;
}

#endif
