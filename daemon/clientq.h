/* clientq.h - what each client of a shard holds in the daemon, and its bounds.
 *
 * A client that sends requests and never reads the replies would otherwise
 * make the daemon hold them all: pull replies are queued for the client's
 * connection (a packed one as a copy, others as references that pin chunks,
 * which a later write must copy). So a shard keeps, per client (its ZeroMQ
 * routing id):
 *  - unsent: bytes of pull replies queued for its connection that ZeroMQ has
 *    not yet written to the socket; a pull that finds it above
 *    mlt_clientq_limit() is refused (-ENOBUFS) rather than queued;
 *  - parked: its pulls waiting for min_clock (ssp.h), at most
 *    MLT_MAX_PARKED_PER_CLIENT.
 * A well-behaved client reads its replies as they come (libmltuner's sockets
 * have no receive limit), so its unsent bytes stay near what one round of
 * pulls asks for, which the limit leaves room for several times over.
 *
 * Threading: owned by the server's thread, except mlt_clientq_sent(), which
 * ZeroMQ's I/O thread calls when it is done with a reply frame; unsent is
 * atomic for that reason. An entry with nothing unsent and nothing parked
 * may be reused for another client; entries never move, so a frame in flight
 * always points at its own. */
#ifndef MLT_CLIENTQ_H
#define MLT_CLIENTQ_H

#include <stddef.h>
#include <stdint.h>

#define MLT_MAX_CLIENTS           4096u       /* clients with replies or pulls outstanding */
#define MLT_MAX_PARKED_PER_CLIENT 4096u       /* parked pulls of one client */
#define MLT_CLIENT_UNSENT_FLOOR   (64u << 20) /* unsent reply bytes a client may always have */
#define MLT_MAX_QUEUED_MSGS       16384       /* ZMQ_SNDHWM and ZMQ_RCVHWM of a shard, per peer */

typedef struct mlt_clientq mlt_clientq_t;
typedef struct mlt_clientq_entry mlt_clientq_entry_t;

mlt_clientq_t *mlt_clientq_new(void);
/* Frees the table. Call after the socket's context is terminated (no frame
 * is in flight). Accepts NULL, clears *qp. */
void mlt_clientq_destroy(mlt_clientq_t **qp);

/* The entry of the client with this routing id (len <= 256 bytes), made if
 * new; NULL when MLT_MAX_CLIENTS other clients all have something
 * outstanding. */
mlt_clientq_entry_t *mlt_clientq_get(mlt_clientq_t *q, const void *id, size_t len);
/* Bytes of its pull replies not yet written to its connection. */
uint64_t mlt_clientq_unsent(const mlt_clientq_entry_t *e);
/* The bound on unsent bytes above which its pulls are refused, for a job
 * whose branch takes branch_bytes on this shard: the floor plus room for
 * four whole-branch pulls. */
uint64_t mlt_clientq_limit(uint64_t branch_bytes);
/* Its parked pulls; mlt_clientq_park() adds delta (+1 parked, -1 left). */
uint32_t mlt_clientq_parked(const mlt_clientq_entry_t *e);
void mlt_clientq_park(mlt_clientq_entry_t *e, int delta);

/* Counts `bytes` of a reply as unsent until its last frame is released:
 * returns the hint to give zmq_msg_init_data() with mlt_clientq_sent as the
 * free function; that frees the data with fn(data, hint) and un-counts the
 * bytes. NULL when out of memory (nothing counted). */
void *mlt_clientq_hold(mlt_clientq_entry_t *e, uint64_t bytes, void (*fn)(void *, void *),
                       void *hint);
/* zmq_free_fn for a frame made with mlt_clientq_hold's hint. Thread-safe. */
void mlt_clientq_sent(void *data, void *hint);

#endif
