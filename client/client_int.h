/* client_int.h - libmltuner's insides, shared by client.c, client_data.c and
 * client_shm.c. */
#ifndef MLT_CLIENT_INT_H
#define MLT_CLIENT_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "common/timeutil.h"
#include "proto/wire.h"
#include "client/kind_wire.h"
#include "client/mltuner.h"

#define MAX_CACHES 8
#define N_STAGES 4 /* shared-memory push stages per table */
#define PIECE_BYTES (1u << 20) /* largest pull or push message payload */
#define STREAM_COPY_BYTES (32u << 20) /* models larger than this pull with streaming stores */
#define ASYNC_MAX_PENDING 4096u        /* unacknowledged requests before mlt_clock waits */

/* P_PREFETCH: a pull sent ahead of need (see prefetch()); its reply only
 * fills a cache, and an error in it is not the caller's: the pull that needs
 * the data asks again. */
/* P_ZOMBIE: a dropped prefetch whose reply a shard will still write into
 * shared memory (see prefetch_drop); nothing waits for it but cache_slot. */
#define ALL_PARTS UINT32_MAX
enum pend_kind { P_ACK, P_HELLO, P_PULL, P_PREFETCH, P_STATUS, P_SHM, P_ZOMBIE, P_CKPT };

typedef struct part {
    uint32_t shard, table, first, count;
} part_t;

typedef struct pending {
    uint64_t id;
    uint32_t shard;
    enum pend_kind kind;
    uint32_t part;           /* P_PULL, P_PREFETCH, shm P_ACK: which part (ALL_PARTS: a
                              * PULL_ALL, every part of the shard) */
    float *const *dsts;      /* a PULL_ALL's P_PULL: the caller's tables */
    int stage;               /* shm P_ACK: the stage region it was pushed from, else -1 */
    float *dst;              /* P_PULL: destination table base (NULL: prefetch) */
    struct cache *cache;     /* P_PULL, P_PREFETCH: cache to fill (NULL: given up on) */
    mlt_server_status_t *st; /* P_STATUS: where to put it */
    uint64_t *ck_size;       /* P_CKPT: the shard file's size and CRC (may be NULL) */
    uint32_t *ck_crc;
    int type;         /* the request's Mlt__MsgType */
    uint64_t sent_ns; /* tracing: when it was handed to ZeroMQ */
} pending_t;

/* One traced request (mlt_client__trace): the client's stamps and the
 * shard's (Header.trace_ns), all CLOCK_MONOTONIC ns on one host (#15). */
typedef struct mlt_trace_rec {
    int type;      /* the request's Mlt__MsgType */
    int kind;      /* its enum pend_kind */
    uint64_t sent; /* handed to ZeroMQ */
    uint64_t got;  /* the reply's header received */
    uint64_t done; /* the reply handled (a pull's data copied out) */
    uint64_t shard[MLT_TRACE_STAMPS];
} mlt_trace_rec_t;

typedef struct cache {
    uint32_t branch;
    bool valid;
    bool prefetch;      /* filled by a prefetch: the branch's next copy, not yet in use */
    bool failed;        /* prefetch: a reply was an error or malformed */
    uint32_t zombie;    /* a dropped prefetch's shared-memory replies still to come: the
                         * shards may yet write into this slot's region, so the slot is
                         * reused only after they arrive (0: a live slot) */
    int64_t min_clock;  /* data reflects every worker's clocks < min_clock */
    uint32_t staleness; /* the branch's, as the shards last said */
    uint64_t used;      /* LRU stamp */
    uint64_t gen;       /* changes whenever msgs do (0: cleared) */
    zmq_msg_t *msgs;    /* one per part (mlt_client.parts), packed */
} cache_t;

typedef struct table {
    uint64_t size;
    uint64_t gfirst; /* global index of its chunk 0 */
} table_t;

struct mlt_client {
    void *ctx;
    void **socks;
    void **mons;              /* per shard: PAIR receiving its socket's disconnect events */
    bool broken;              /* a shard dropped the connection with requests pending */
    int lost;                 /* the first shard that dropped it (-1: none) */
    char **endpoints;
    uint32_t n, worker;
    uint32_t chunk_floats;
    double timeout_s;
    uint64_t next_id;
    pending_t *pending;
    size_t n_pending, cap_pending;
    int first_err;            /* first error among completed requests */
    char err[512];
    table_t *tables;
    uint32_t n_tables;
    uint64_t n_chunks;        /* global chunks of all tables */
    part_t *parts;            /* (shard, table, chunk range) pieces */
    uint32_t n_parts;
    uint32_t *table_part;     /* n_tables: table t's one part, ALL_PARTS when it has several */
    float **view_buf;         /* n_tables: mlt_pull_view's copy of a table of several parts */
    cache_t caches[MAX_CACHES];
    uint64_t stamp;
    atomic_long push_frames;  /* zero-copy push frames ZeroMQ still holds */
    bool stream_copy;         /* pull copies bypass the cache (large models, AVX-512) */
    bool no_clock_prefetch;   /* MLT_CLOCK_PREFETCH=0: mlt_clock asks for no copy ahead */
    uint64_t prefetch_hits;   /* pulls served by a prefetched copy */
    uint64_t gen_seq;         /* the last cache_t.gen given out */
    /* mlt_client_keep_dst: the tables of the last pull hold cache held_ca's
     * copy of generation held_gen */
    bool keep_dst;
    const cache_t *held_ca;
    uint64_t held_gen;
    float **held_dst;         /* n_tables table pointers */
    uint64_t copies_skipped;
    /* the same-host transport (client_shm.c): one segment holding a region per
     * cache slot (0..MAX_CACHES-1) and per push stage (MAX_CACHES + r), each
     * with every table at tbl_off[t]; shards that attached it pull into and
     * push from it instead of sending the data */
    bool shm_off;             /* MLT_SHM=0 */
    bool shm_map_off;         /* MLT_SHM_MAP=0: no sealed segment for the shards to map */
    char *shm_base;           /* the mapping (NULL: none) */
    size_t shm_bytes;
    uint64_t shm_token;
    uint64_t region_bytes;
    uint64_t *part_off;       /* n_parts: where part i is in a region (the shard-major
                               * layout, proto/layout.h) */
    uint64_t *shard_off;      /* n shards: where shard s's first group is in a region */
    uint32_t *shm_handle;     /* n shards */
    bool *shm_ok;             /* n shards: attached */
    uint32_t stage_busy[N_STAGES]; /* requests reading the stage region not yet answered */
    uint32_t stage_next;
    /* The pushes of the clock under way (#15): with shared memory they are
     * copied into stage region step_region at once and sent with the clock, one
     * STEP per shard (mlt_clock), or earlier by mlt_client__step_flush when
     * another request to a shard that awaits one is made. MLT_STEP=0: every
     * push is its own request, sent at once. */
    bool step_off;
    int step_region;          /* -1: no pushes waiting */
    uint32_t step_branch;
    bool *step_table;         /* n_tables: pushed into step_region */
    bool *step_due;           /* n shards: owes that shard a STEP */
    bool *step_pulled;        /* n shards: mlt_clock's STEP there carried the pull */
    uint32_t *step_list;      /* n_tables: scratch for a STEP's table list */
    bool in_step;             /* sending one (mlt_client__pending does not flush) */
    char shm_why[640];        /* what the transport is, or why not shared memory */
    /* timing (mlt_client__trace): every request asks the shard for its stamps */
    bool trace;
    mlt_trace_rec_t *trace_rec;
    size_t n_trace, cap_trace;
    /* MLT_TRACE=FILE: the records are kept (the first TRACE_KEEP) and summed
     * up, with the time spent in mlt_pull, mlt_push and mlt_clock (api_ns,
     * api_n), in lines appended to FILE when the client is destroyed */
    bool trace_env;
    char trace_path[256];
    uint64_t api_ns[3], api_n[3];
    double trace_t0;
};
#define TRACE_KEEP 200000u

/* Byte offset in the segment of region r: cache slot r (0..MAX_CACHES-1) or
 * push stage r - MAX_CACHES. */
static inline uint64_t region_off(const mlt_client_t *c, uint32_t r)
{
    return 64 + (uint64_t)r * c->region_bytes;
}

/* Part pt's floats in its table: [*off, *off + return). */
static inline uint64_t part_span(const mlt_client_t *c, const part_t *pt, uint64_t *off)
{
    const uint64_t size = c->tables[pt->table].size;
    const uint64_t end = (uint64_t)(pt->first + pt->count) * c->chunk_floats;
    *off = (uint64_t)pt->first * c->chunk_floats;
    return (end < size ? end : size) - *off;
}

/* Shard s is asked for every table at once (PULL_ALL): it uses the segment. */
static inline bool pull_all_to(const mlt_client_t *c, uint32_t s)
{
    return !c->step_off && c->shm_ok[s] && c->shard_off[s] != UINT64_MAX;
}

/* The calls, timed under MLT_TRACE=FILE (client.c sums them up). */
static inline int mlt_client__timed(mlt_client_t *c, int which, uint64_t t0, int rc)
{
    c->api_ns[which] += mlt_time_mono_ns() - t0;
    c->api_n[which]++;
    return rc;
}

/* client.c: requests and replies */
int mlt_client__err(mlt_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Keeps the first error among completed requests (first_err and its message). */
void mlt_client__record_error(mlt_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
pending_t *mlt_client__pending(mlt_client_t *c, uint32_t shard, enum pend_kind kind);
void mlt_client__header(mlt_client_t *c, mlt_header_t *h, Mlt__MsgType type, const pending_t *p);
int mlt_client__send(mlt_client_t *c, uint32_t s, mlt_header_t *h);
/* Reads the shards' disconnect events waiting (no blocking): true once a
 * shard dropped the connection; the client then sends nothing more (#12). */
bool mlt_client__broken(mlt_client_t *c);
/* Waits for one round of replies (handling them; a reply that answers a
 * pending request moves *deadline on by timeout_s; junk, or replies to
 * requests given up on, do not): 0, -ETIMEDOUT once *deadline has passed, or
 * a poll error. */
int mlt_client__pump(mlt_client_t *c, double *deadline);
/* Pumps until no request of `kind` (any but P_ZOMBIE and P_PREFETCH if kind <
 * 0) is pending;
 * returns the first error of the completed requests (and clears it). On
 * -ETIMEDOUT the HELLO and STATUS requests waited for are given up (a late
 * reply is ignored, never written to the caller's gone status), and the
 * message says what a shard sent instead, if anything. */
int mlt_client__wait(mlt_client_t *c, int kind);
/* Handles one message from shard s. Returns 1 when it answered a pending
 * request, 0 otherwise (junk, a reply to a request given up on). */
int mlt_client__recv(mlt_client_t *c, uint32_t s);

/* Timing (#15, bench/ps): on, every request sent asks its shard for stamps
 * (Header.trace) and each reply's are kept with the client's (at most 2^20
 * records). mlt_client__trace_take moves out up to max of them, oldest
 * first, and forgets the rest; returns how many. */
void mlt_client__trace(mlt_client_t *c, bool on);
size_t mlt_client__trace_take(mlt_client_t *c, mlt_trace_rec_t *out, size_t max);
/* Keeps the stamps of reply h to request p (got: when its header came). */
void mlt_client__trace_keep(mlt_client_t *c, const pending_t *p, const mlt_header_t *h,
                            uint64_t got);
/* MLT_TRACE=FILE: appends the summary of the records to FILE. */
void mlt_client__trace_summary(mlt_client_t *c);

/* The status a STATUS_REPLY carries, as mlt_client_status() gives it (at
 * most MLT_MAX_BRANCHES branches, allocated: free with
 * mlt_server_status_free). Also the daemon's status round (shardask.c). */
void mlt_client__status_from_reply(const mlt_header_t *h, mlt_server_status_t *o);

/* client_data.c: pulls, the pull cache, pushes, writes and clocks */
/* Copies a packed pull reply into the caller's table and keeps its frame in
 * the cache. frames[0..n) are the payload frames (ownership moves to the
 * cache). */
void mlt_client__on_pull(mlt_client_t *c, const pending_t *p, const mlt_header_t *h,
                         zmq_msg_t *frames, size_t n);
/* At a clock on a branch of staleness 0, the cache slot for the pull that
 * usually comes next, asked for with the clock (NULL: none wanted). */
cache_t *mlt_client__clock_prefetch(mlt_client_t *c, uint32_t branch, int64_t clock);
/* Sends the pull requests of every part of the job for `clock` into cache
 * ca (kind P_PULL with the caller's tables dst, or P_PREFETCH), but none to
 * the shards asked[s] says were asked already (asked may be NULL). */
int mlt_client__send_pulls(mlt_client_t *c, cache_t *ca, uint32_t branch, int64_t clock,
                           enum pend_kind kind, float *const *dst, const bool *asked);
/* Frees mlt_pull_view's buffers and the table-to-part map (n_tables). */
void mlt_client__views_free(mlt_client_t *c);
/* Frees a cache slot's frames and clears it. */
void mlt_client__cache_clear(mlt_client_t *c, cache_t *ca);
/* The cached (not prefetched) copy of a branch, or NULL. */
cache_t *mlt_client__cache_find(mlt_client_t *c, uint32_t branch);
/* Forgets the prefetches of `branch` (of every branch if all): replies still
 * to come are dropped on arrival, the copies freed. */
void mlt_client__prefetch_drop(mlt_client_t *c, uint32_t branch, bool all);

/* client_shm.c: the same-host transport */
void mlt_client__shm_setup(mlt_client_t *c);
void mlt_client__shm_teardown(mlt_client_t *c);
void mlt_client__shm_reply(mlt_client_t *c, const pending_t *p, const mlt_header_t *h);
/* The stage region for the next push: the first free one other than the
 * step's (a region reused stays in cache and needs no new pages), else the
 * next in turn. */
uint32_t mlt_client__stage_pick(mlt_client_t *c);
/* Waits until stage region `r` may be overwritten. */
int mlt_client__stage_wait(mlt_client_t *c, uint32_t r);
/* Sends the pushes waiting for the clock (c->step_*), one STEP without a
 * clock to each shard owed one; 0 or the send's error. */
int mlt_client__step_flush(mlt_client_t *c);

#endif
