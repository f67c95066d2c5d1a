/* wire.h - encoding and validating frame 0 of every mltuner message.
 *
 * mlt_wire_decode() is the only way a header enters the programs: it checks
 * the frame size, the protobuf encoding, the version, the message type and
 * every field against proto/limits.h, and on failure returns -errno with a
 * message that says what was wrong. Checks that need daemon state (does the
 * branch exist, is the chunk range on this shard) are the daemon's.
 *
 * No logging, no global state; thread-safe. */
#ifndef MLT_WIRE_H
#define MLT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"
#include <limits.h> /* the generated header uses INT_MAX */

#include "proto/mltuner.pb-c.h"

typedef Mlt__Header mlt_header_t;

/* Initialises *h as an empty header of `type` with the current version. */
void mlt_wire_init(mlt_header_t *h, Mlt__MsgType type);
/* Initialises h as the ERROR reply to request_id: code is -errno (the wire
 * carries errno), text is borrowed (at most MLT_MAX_ERROR_LEN bytes are sent
 * by the callers, which format it). The daemon's shards and its control
 * endpoint both answer this way. */
void mlt_wire_init_error(mlt_header_t *h, uint64_t request_id, int code, char *text);

/* Name of a message type for messages and logs ("PULL"), "?" if unknown. */
const char *mlt_wire_type_name(int type);

/* Decodes and validates a header frame. On success *out is a new header the
 * caller owns (free with mlt_wire_free). Returns 0, or:
 *   -EMSGSIZE         frame larger than MLT_MAX_HEADER_BYTES
 *   -EPROTO           not a valid protobuf header
 *   -EPROTONOSUPPORT  another protocol version
 *   -EBADMSG          unknown message type
 *   -EINVAL           a field outside its limit (the message names it)
 * with a one-line reason in err. */
int mlt_wire_decode(const void *buf, size_t len, mlt_header_t **out, char *err, size_t errlen);

/* Checks a job spec (names, counts, sizes, shapes, rule). 0 or -EINVAL. */
int mlt_wire_check_job(const Mlt__JobSpec *job, char *err, size_t errlen);

/* Checks tunables are finite and within range. 0 or -EINVAL. */
int mlt_wire_check_tunables(const Mlt__Tunables *t, char *err, size_t errlen);

void mlt_wire_free(mlt_header_t **hp);

/* Encodes h into a new buffer (*buf, caller frees with mlt_free); returns the
 * length, or 0 if out of memory. */
size_t mlt_wire_encode(const mlt_header_t *h, uint8_t **buf);

/* Encodes h and sends it as frame 0 on a ZeroMQ socket (flags: ZMQ_SNDMORE
 * when payload frames follow). Returns 0 or -errno. */
int mlt_wire_send(void *sock, const mlt_header_t *h, int flags);

/* Header.trace_ns of a traced reply (#15): the shard's stamps, in order. */
enum {
    MLT_TR_BEGIN,   /* woke for it, or finished the request before it */
    MLT_TR_DECODED, /* read whole and decoded */
    MLT_TR_READ,    /* PUSH, WRITE: payload read; PULL: parked (0: answered at once) */
    MLT_TR_CHECKED, /* PUSH, WRITE: NaN check done; PULL: released (0: never parked) */
    MLT_TR_DONE,    /* applied, written, clock counted */
    MLT_TR_SENT     /* reply handed to ZeroMQ */
};

#endif
