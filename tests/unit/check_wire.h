/* check_wire.h - shared by the wire suite's files: check_wire.c (these
 * helpers, round trips, frames, names, the suite) and check_wire_limits.c (the
 * limits of header fields, tunables, job specs and server info). */
#ifndef MLT_CHECK_WIRE_H
#define MLT_CHECK_WIRE_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

#define ERRLEN 256

/* Packs h with mlt_wire_encode and decodes the bytes. */
int decode_hdr(const mlt_header_t *h, mlt_header_t **out, char *err, size_t errlen);
/* true if s contains the decimal number v as a whole token (sign included). */
int has_number(const char *s, long long v);
/* Expects mlt_wire_decode to accept h. */
#define ACCEPT(h) accept_((h), __LINE__)
void accept_(const mlt_header_t *h, int line);
/* Expects mlt_wire_decode to fail with `code`, leave *out NULL, and give a
 * one-line message containing `field`. The message is copied to msg (if not
 * NULL) for further checks. */
#define REJECT(h, code, field) reject_((h), (code), (field), NULL, __LINE__)
#define REJECT_MSG(h, code, field, msg) reject_((h), (code), (field), (msg), __LINE__)
void reject_(const mlt_header_t *h, int code, const char *field, char *msg, int line);
/* A request header that passes every check (all optional fields absent). */
mlt_header_t base(void);

/* Valid job spec with one table "w" of 6 floats, shape {2, 3}. */
typedef struct {
    Mlt__JobSpec job;
    Mlt__TableSpec t[2];
    Mlt__TableSpec *tp[2];
    uint32_t shape[2][MLT_MAX_SHAPE_DIMS + 1];
} job_fixture_t;

void job_init(job_fixture_t *f);
mlt_header_t with_job(Mlt__JobSpec *job);
mlt_header_t with_tunables(Mlt__Tunables *t);

/* Fills every field of t, lr first (a valid set). */
void fill_tunables(Mlt__Tunables *t, float lr);

/* check_wire_limits.c's TCases, added to the suite */
void wire_limits_tcases(Suite *s);

#endif
