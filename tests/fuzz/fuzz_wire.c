/* fuzz_wire.c - libFuzzer target for mlt_wire_decode (frame 0 of every message).
 *
 * Any byte string must either decode to a header that satisfies the decoder's
 * own guarantees (current version, known type, every bounded field in range)
 * or fail with one of the documented codes, *out NULL and a one-line reason.
 * An accepted header must re-encode, and its encoding must decode again to the
 * same bytes (see has_tag0 for the one exemption). Violations abort.
 * tests/fuzz/replay.c runs the corpus through this function in every ordinary
 * `meson test`. */
#include "proto/wire.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int known(const ProtobufCEnumDescriptor *d, int v)
{
    return protobuf_c_enum_descriptor_get_value(d, v) != NULL;
}

/* The bounds mlt_wire_decode promises for an accepted header. */
static void check_accepted(const mlt_header_t *h)
{
    fuzz_assert(h->version == MLT_PROTO_VERSION);
    fuzz_assert(h->type != MLT__MSG_TYPE__MSG_NONE && known(&mlt__msg_type__descriptor, (int)h->type));
    fuzz_assert(strcmp(mlt_wire_type_name((int)h->type), "?") != 0);
    fuzz_assert(!h->has_worker || h->worker < MLT_MAX_WORKERS);
    fuzz_assert(!h->has_branch || h->branch <= MLT_MAX_BRANCH_ID);
    fuzz_assert(!h->has_parent || h->parent <= MLT_MAX_BRANCH_ID);
    fuzz_assert(!h->has_clock || (h->clock >= 0 && h->clock <= MLT_MAX_CLOCK));
    fuzz_assert(!h->has_table || h->table < MLT_MAX_TABLES);
    fuzz_assert(!h->has_chunk_count || (h->chunk_count >= 1 && h->chunk_count < MLT_MAX_FRAMES));
    fuzz_assert(!h->has_kind || known(&mlt__branch_kind__descriptor, (int)h->kind));
    fuzz_assert(!h->error || strlen(h->error) <= MLT_MAX_ERROR_LEN);
    fuzz_assert(h->n_branches <= MLT_MAX_BRANCHES);
    char err[256];
    if (h->tunables) {
        fuzz_assert(mlt_wire_check_tunables(h->tunables, err, sizeof err) == 0);
        fuzz_assert(!h->tunables->has_lr || isfinite(h->tunables->lr));
    }
    if (h->job) {
        fuzz_assert(mlt_wire_check_job(h->job, err, sizeof err) == 0);
        fuzz_assert(h->job->n_tables >= 1 && h->job->n_tables <= MLT_MAX_TABLES);
        fuzz_assert(h->job->n_workers >= 1 && h->job->n_workers <= MLT_MAX_WORKERS);
        for (size_t i = 0; i < h->job->n_tables; i++) {
            const Mlt__TableSpec *t = h->job->tables[i];
            fuzz_assert(t->size >= 1 && t->size <= MLT_MAX_TABLE_FLOATS);
            fuzz_assert(t->n_shape <= MLT_MAX_SHAPE_DIMS);
            size_t n = strlen(t->name);
            fuzz_assert(n >= 1 && n <= MLT_MAX_NAME_LEN);
        }
    }
    if (h->server) {
        fuzz_assert(h->server->n_servers >= 1 && h->server->n_servers <= MLT_MAX_SERVERS);
        fuzz_assert(h->server->rank < h->server->n_servers);
        fuzz_assert(h->server->chunk_floats >= 1 && h->server->chunk_floats <= MLT_MAX_CHUNK_BYTES / 4);
    }
}

/* true if m, or any message inside it, carries an unknown field numbered 0.
 * libprotobuf-c (1.4.1) rejects tag 0 only in its one-byte form: a padded
 * varint tag of field 0 (0x80 0x00) is kept as an unknown field and
 * re-encoded as 0x00, which it then rejects. Such headers are exempt from the
 * re-encoding check below. The walk follows the descriptors, so a message
 * type added to the header later is covered too. */
static int has_tag0(const ProtobufCMessage *m)
{
    if (!m)
        return 0;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (has_tag0(v[k]))
                    return 1;
        } else if (has_tag0(*(ProtobufCMessage *const *)(base + f->offset))) {
            return 1;
        }
    }
    return 0;
}

static void check_rejected(int rc, const mlt_header_t *out, const char *err, size_t errlen)
{
    fuzz_assert(rc == -EMSGSIZE || rc == -EPROTO || rc == -EPROTONOSUPPORT || rc == -EBADMSG ||
          rc == -EINVAL);
    fuzz_assert(out == NULL);
    fuzz_assert(memchr(err, '\0', errlen) != NULL);
    fuzz_assert(err[0] != '\0');
    fuzz_assert(strchr(err, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    memset(err, 0, sizeof err);
    mlt_header_t *h = (mlt_header_t *)(uintptr_t)1; /* must be overwritten */
    int rc = mlt_wire_decode(data, size, &h, err, sizeof err);

    /* the same verdict with a tiny buffer and with none */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    mlt_header_t *h2 = NULL;
    int rc2 = mlt_wire_decode(data, size, &h2, tiny, sizeof tiny);
    fuzz_assert(rc2 == rc);
    fuzz_assert(rc2 == 0 || memchr(tiny, '\0', sizeof tiny) != NULL);
    mlt_wire_free(&h2);
    rc2 = mlt_wire_decode(data, size, &h2, NULL, 0);
    fuzz_assert(rc2 == rc);
    mlt_wire_free(&h2);

    fuzz_verdict(rc == 0);
    if (rc != 0) {
        check_rejected(rc, h, err, sizeof err);
        return 0;
    }
    fuzz_assert(h != NULL);
    check_accepted(h);

    /* re-encode; unless it grew past the frame limit (packed repeated fields
     * are re-encoded unpacked) it must decode again, to the same encoding */
    if (has_tag0(&h->base)) {
        mlt_wire_free(&h);
        return 0;
    }
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(h, &buf);
    fuzz_assert(n > 0 && buf != NULL);
    rc2 = mlt_wire_decode(buf, n, &h2, err, sizeof err);
    if (n > MLT_MAX_HEADER_BYTES) {
        fuzz_assert(rc2 == -EMSGSIZE);
    } else {
        if (rc2 != 0)
            fprintf(stderr, "re-encoded header rejected: %d %s\n", rc2, err);
        fuzz_assert(rc2 == 0);
        check_accepted(h2);
        uint8_t *buf2 = NULL;
        size_t n2 = mlt_wire_encode(h2, &buf2);
        fuzz_assert(n2 == n && memcmp(buf, buf2, n) == 0);
        mlt_free(buf2);
        mlt_wire_free(&h2);
    }
    mlt_free(buf);
    mlt_wire_free(&h);
    fuzz_assert(h == NULL);
    return 0;
}
