/* limits.h - every bound on what the wire may carry. A value read from the
 * network is checked against one of these before it drives an allocation, a
 * loop or an index. Peers that exceed one get an error reply naming the limit. */
#ifndef MLT_LIMITS_H
#define MLT_LIMITS_H

#define MLT_PROTO_VERSION 1u

#define MLT_MAX_HEADER_BYTES 65536u          /* frame 0 (the protobuf header) */
#define MLT_MAX_FRAMES 65536u                /* frames in one message, header included */
#define MLT_MAX_CHUNK_BYTES (16u << 20)      /* largest chunk (and payload frame) */
#define MLT_MAX_SOCKET_MSG_BYTES (MLT_MAX_CHUNK_BYTES + 4096u) /* ZMQ_MAXMSGSIZE per frame */
#define MLT_MAX_TABLES 4096u                 /* tables in one job */
#define MLT_MAX_NAME_LEN 128u                /* job and table names, bytes */
#define MLT_MAX_TABLE_FLOATS (1ull << 34)    /* floats in one table (64 GiB) */
#define MLT_MAX_SHAPE_DIMS 8u                /* dimensions of a table's shape */
#define MLT_MAX_WORKERS 1024u                /* workers in one job */
#define MLT_MAX_SERVERS 256u                 /* shards */
#define MLT_MAX_BRANCHES 4096u               /* live branches */
#define MLT_MAX_BRANCH_ID 0x7fffffffu        /* branch ids are 0..this */
#define MLT_MAX_STALENESS 1000u              /* staleness bound */
#define MLT_MAX_WARMUP 10000000u             /* warm-up length in updates */
#define MLT_MAX_CLOCK (1ll << 40)            /* clocks a branch may count */
#define MLT_MAX_ERROR_LEN 512u               /* error text in a reply */
#define MLT_MAX_PROGRAM_LEN 64u              /* a worker's program name (JOIN, #13) */
#define MLT_MAX_THREADS 4096u                /* a worker's compute threads (JOIN) */
#define MLT_MAX_PARKED 65536u                /* parked pulls per daemon */
#define MLT_MAX_CLIENT_ID_BYTES 256u         /* ZeroMQ routing id */
#define MLT_MAX_JOB_TEXT 49152u              /* a job file sent over the wire */
#define MLT_MAX_PATH_LEN 1024u               /* job_path, out_dir */
#define MLT_MAX_ENDPOINT_LEN 256u            /* one server endpoint */
#define MLT_MAX_BATCH 65536u                 /* batch size per worker */
#define MLT_TRACE_STAMPS 6u                  /* Header.trace_ns of a traced reply (#15) */
#define MLT_MAX_OVERRIDES 64u                /* "key=value" overrides of a job */
#define MLT_MAX_OVERRIDE_LEN 256u            /* one override */
#define MLT_MAX_METRICS_TEXT 60000u          /* METRICS_REPLY text (fits the header) */
#define MLT_MAX_SHM_NAME_LEN 64u             /* a shared-memory segment's name */
#define MLT_MAX_SHM_BYTES (1ull << 36)       /* one shared-memory segment (64 GiB) */
#define MLT_MAX_SHM_SEGMENTS 256u            /* segments one daemon keeps open */

#endif
