/* store_int.h - the store's insides, shared by store.c (branches, chunks,
 * updates) and store_ckpt.c (a shard's checkpoint file). Private to
 * daemon/store*.c; the threading of store.h applies. */
#ifndef MLT_STORE_INT_H
#define MLT_STORE_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/store.h"

#define CHUNK_HDR 64 /* parameters start 64 bytes into the allocation */

struct mlt_chunk {
    atomic_uint refs;       /* holders: branches + in-flight messages */
    uint32_t branch_refs;   /* branches only (main thread), for accounting */
    uint32_t n;             /* parameter floats */
    uint32_t state_arrays;  /* optimizer state arrays of n floats after them */
    mlt_optim_scalars_t sc; /* the rule's scalars: updates applied, lr_max, weight_sum */
    uint64_t bytes;         /* size of the allocation */
    struct acct *acct;      /* the store's counter, decremented at free */
};

/* Allocated-bytes counter. Chunks held by in-flight messages may outlive the
 * store, so the counter is its own object, kept alive by the store and by every
 * live chunk. */
typedef struct acct {
    _Atomic uint64_t allocated; /* bytes of live chunk allocations */
    atomic_ulong holders;       /* the store + live chunks */
} acct_t;

_Static_assert(sizeof(struct mlt_chunk) <= CHUNK_HDR, "chunk header exceeds 64 bytes");

typedef struct table {
    char *name;
    uint64_t size;      /* floats */
    uint64_t n_chunks;  /* chunks in the whole table */
    uint64_t gfirst;    /* global index of its chunk 0 */
    uint64_t own_first; /* first table-local chunk on this shard */
    uint64_t own_count; /* chunks on this shard */
    uint64_t slot0;     /* index of own_first in a branch's chunk array */
} table_t;

#define OUT_CATCHING_UP 2

struct mlt_branch {
    uint32_t id;
    int64_t parent; /* -1: root */
    mlt_branch_kind_t kind;
    mlt_tunables_t t;
    bool diverged;
    uint32_t n_workers;   /* the job's, fixed while the branch lives */
    int64_t *clocks;      /* finished clocks per worker */
    uint8_t *out;         /* per worker: not in min_clock: 1 dropped, not back on b yet;
                             OUT_CATCHING_UP back below the clock it had reached */
    mlt_chunk_t **chunks; /* n_owned references */
};

struct mlt_store {
    uint32_t chunk_floats;
    uint64_t limit;
    acct_t *acct;       /* bytes of live chunk allocations */
    uint64_t potential; /* sum of branch_bytes over live branches */
    char *job;          /* NULL: no job */
    uint32_t n_workers;
    mlt_rule_t rule;
    bool average; /* update.average (sgd/nesterov) */
    int x_array;  /* the state array a test reads (the average x); -1: none */
    uint32_t state_arrays;
    table_t *tables;
    uint32_t n_tables;
    uint64_t n_owned;      /* chunks on this shard, all tables */
    uint64_t branch_bytes; /* bytes one fully private branch takes */
    mlt_branch_t **branches;
    uint32_t n_branches;
    uint8_t gone[MLT_MAX_WORKERS / 8]; /* workers the coordinator dropped (bit per worker) */
};

/* New zeroed chunk of n floats with one (branch) reference, or NULL. */
mlt_chunk_t *mlt_store__chunk_new(mlt_store_t *st, uint32_t n);
/* Drops a branch's reference to c. */
void mlt_store__chunk_drop(mlt_chunk_t *c);
/* A branch with no chunks yet (the slots NULL), or NULL out of memory. */
mlt_branch_t *mlt_store__branch_new(const mlt_store_t *st, uint32_t id, int64_t parent,
                                    mlt_branch_kind_t kind, const mlt_tunables_t *t);
/* Adds b to the live branches (the caller has checked the limits). */
void mlt_store__branch_add(mlt_store_t *st, mlt_branch_t *b);
/* Drops b's references and frees it. */
void mlt_store__branch_destroy(mlt_branch_t *b, uint64_t n_owned);

#endif
