/* check_wire.c - Check suite for proto/wire (frame 0 of every message).
 *
 * "roundtrip": every message type, filled with the fields its flow carries, is
 * encoded with mlt_wire_encode (and sent over an inproc socket with
 * mlt_wire_send), decoded, and compared field by field.
 * "limits": one test per limit in proto/limits.h and per return code of
 * mlt_wire_decode; each bounded field is tried just inside and just outside its
 * range, and every rejection must name the offending field in its message.
 * "names": mlt_wire_type_name for known and unknown types.
 * The limits of header fields, tunables, job specs and server info are
 * check_wire_limits.c's ("fields", "tunables", "job", "server"); the helpers
 * both use are in check_wire.h.
 *
 * Frames are built from Mlt__Header structs (mlt_wire_init) and packed with
 * mlt_wire_encode; out-of-range enum values are plain int assignments. */
#include "tests/unit/check_wire.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"


/* ---- helpers ------------------------------------------------------------ */

/* Packs h with mlt_wire_encode and decodes the bytes. */
int decode_hdr(const mlt_header_t *h, mlt_header_t **out, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(h, &buf);
    ck_assert_msg(n > 0 && buf != NULL, "mlt_wire_encode failed");
    int rc = mlt_wire_decode(buf, n, out, err, errlen);
    mlt_free(buf);
    return rc;
}

/* true if s contains the decimal number v as a whole token (sign included). */
int has_number(const char *s, long long v)
{
    for (const char *p = s; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p == '-' && p[1] >= '0' && p[1] <= '9')))
            continue;
        if (p > s && ((p[-1] >= '0' && p[-1] <= '9') || p[-1] == '-' || p[-1] == '.'))
            continue;
        char *end;
        long long x = strtoll(p, &end, 10);
        if (x == v && *end != '.' && !(*end >= '0' && *end <= '9'))
            return 1;
    }
    return 0;
}

void accept_(const mlt_header_t *h, int line)
{
    char err[ERRLEN] = "";
    mlt_header_t *out = NULL;
    int rc = decode_hdr(h, &out, err, sizeof err);
    ck_assert_msg(rc == 0, "line %d: expected the header to be accepted, got %d (%s)", line, rc,
                  err);
    ck_assert_msg(out != NULL, "line %d: accepted but *out is NULL", line);
    mlt_wire_free(&out);
    ck_assert_ptr_null(out);
}

/* Expects mlt_wire_decode to fail with `code`, leave *out NULL, and give a
 * one-line message containing `field`. The message is copied to msg (if not
 * NULL) for further checks. */
void reject_(const mlt_header_t *h, int code, const char *field, char *msg, int line)
{
    char err[ERRLEN];
    memset(err, 0, sizeof err);
    mlt_header_t *out = (mlt_header_t *)(uintptr_t)1; /* must be overwritten */
    int rc = decode_hdr(h, &out, err, sizeof err);
    if (rc == 0)
        mlt_wire_free(&out); /* wrongly accepted; don't leak it */
    ck_assert_msg(rc == code, "line %d: expected %d, got %d (%s)", line, code, rc, err);
    ck_assert_msg(out == NULL, "line %d: failed decode left *out non-NULL", line);
    ck_assert_msg(err[0] != '\0', "line %d: no error message", line);
    ck_assert_msg(strchr(err, '\n') == NULL, "line %d: message is not one line: %s", line, err);
    ck_assert_msg(strstr(err, field) != NULL, "line %d: message \"%s\" does not name \"%s\"", line,
                  err, field);
    if (msg)
        memcpy(msg, err, sizeof err);
}

/* A request header that passes every check (all optional fields absent). */
mlt_header_t base(void)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_PULL);
    return h;
}

void job_init(job_fixture_t *f)
{
    mlt__job_spec__init(&f->job);
    f->job.name = (char *)"job";
    f->job.n_workers = 4;
    f->job.rule = MLT__RULE__RULE_SF_ADAMW;
    f->job.has_average = 1, f->job.average = 1;
    for (int i = 0; i < 2; i++) {
        mlt__table_spec__init(&f->t[i]);
        f->tp[i] = &f->t[i];
        f->t[i].shape = f->shape[i];
    }
    f->t[0].name = (char *)"w";
    f->t[0].size = 6;
    f->t[0].n_shape = 2;
    f->shape[0][0] = 2;
    f->shape[0][1] = 3;
    f->t[1].name = (char *)"b";
    f->t[1].size = 3;
    f->job.n_tables = 1;
    f->job.tables = f->tp;
}

mlt_header_t with_job(Mlt__JobSpec *job)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_REGISTER);
    h.job = job;
    return h;
}

mlt_header_t with_tunables(Mlt__Tunables *t)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_SET_TUNABLES);
    h.has_branch = 1;
    h.branch = 1;
    h.tunables = t;
    return h;
}

/* ---- roundtrip ---------------------------------------------------------- */

/* Storage for one fully populated header of any type. */
typedef struct {
    mlt_header_t h;
    Mlt__Tunables tun, btun;
    job_fixture_t job;
    Mlt__ServerInfo server;
    Mlt__BranchInfo bi[2];
    Mlt__BranchInfo *bip[2];
} msg_fixture_t;

void fill_tunables(Mlt__Tunables *t, float lr)
{
    mlt__tunables__init(t);
    t->has_lr = 1, t->lr = lr;
    t->has_momentum = 1, t->momentum = 0.9f;
    t->has_weight_decay = 1, t->weight_decay = 1e-4f;
    t->has_staleness = 1, t->staleness = 3;
    t->has_beta1 = 1, t->beta1 = 0.9f;
    t->has_beta2 = 1, t->beta2 = 0.999f;
    t->has_eps = 1, t->eps = 1e-8f;
    t->has_warmup = 1, t->warmup = 500;
}

/* Fills f->h as a `type` message with the fields its flow carries
 * (see the comments in mltuner.proto). */
static void fill_message(msg_fixture_t *f, Mlt__MsgType type)
{
    memset(f, 0, sizeof *f);
    mlt_header_t *h = &f->h;
    mlt_wire_init(h, type);
    h->has_request_id = 1;
    h->request_id = 0x0123456789abcdefull + (uint64_t)type;
    switch (type) {
    case MLT__MSG_TYPE__MSG_HELLO:
    case MLT__MSG_TYPE__MSG_HEARTBEAT:
        h->has_worker = 1, h->worker = MLT_MAX_WORKERS - 1;
        break;
    case MLT__MSG_TYPE__MSG_REGISTER:
        job_init(&f->job);
        f->job.job.n_tables = 2;
        f->job.t[1].n_shape = 1;
        f->job.shape[1][0] = 3;
        h->job = &f->job.job;
        break;
    case MLT__MSG_TYPE__MSG_BRANCH_CREATE:
        h->has_branch = 1, h->branch = 0;
        h->has_kind = 1, h->kind = MLT__BRANCH_KIND__KIND_TRAIN;
        fill_tunables(&f->tun, 0.01f);
        h->tunables = &f->tun;
        break;
    case MLT__MSG_TYPE__MSG_FORK:
        h->has_branch = 1, h->branch = 7;
        h->has_parent = 1, h->parent = 3;
        h->has_kind = 1, h->kind = MLT__BRANCH_KIND__KIND_EVAL;
        break;
    case MLT__MSG_TYPE__MSG_FREE:
        h->has_branch = 1, h->branch = MLT_MAX_BRANCH_ID;
        break;
    case MLT__MSG_TYPE__MSG_SET_TUNABLES:
        h->has_branch = 1, h->branch = 12;
        fill_tunables(&f->tun, 0.5f);
        h->tunables = &f->tun;
        break;
    case MLT__MSG_TYPE__MSG_WRITE:
    case MLT__MSG_TYPE__MSG_PUSH:
    case MLT__MSG_TYPE__MSG_PULL:
        h->has_worker = 1, h->worker = 2;
        h->has_branch = 1, h->branch = 5;
        h->has_table = 1, h->table = MLT_MAX_TABLES - 1;
        h->has_chunk_first = 1, h->chunk_first = 100000;
        h->has_chunk_count = 1, h->chunk_count = MLT_MAX_FRAMES - 1;
        if (type == MLT__MSG_TYPE__MSG_PULL)
            h->has_clock = 1, h->clock = MLT_MAX_CLOCK;
        break;
    case MLT__MSG_TYPE__MSG_PULL_REPLY:
        h->has_min_clock = 1, h->min_clock = 41;
        h->has_chunk_first = 1, h->chunk_first = 0;
        h->has_chunk_count = 1, h->chunk_count = 1;
        break;
    case MLT__MSG_TYPE__MSG_CLOCK:
        h->has_worker = 1, h->worker = 0;
        h->has_branch = 1, h->branch = 9;
        h->has_clock = 1, h->clock = 17;
        break;
    case MLT__MSG_TYPE__MSG_STATUS_REPLY:
        mlt__server_info__init(&f->server);
        f->server.rank = 2;
        f->server.n_servers = 3;
        f->server.chunk_floats = MLT_MAX_CHUNK_BYTES / 4;
        f->server.has_memory_limit = 1, f->server.memory_limit = 1ull << 40;
        f->server.has_memory_potential = 1, f->server.memory_potential = 12345;
        f->server.has_memory_allocated = 1, f->server.memory_allocated = 678;
        f->server.job = (char *)"resnet";
        h->server = &f->server;
        for (int i = 0; i < 2; i++) {
            mlt__branch_info__init(&f->bi[i]);
            f->bip[i] = &f->bi[i];
            f->bi[i].id = (uint32_t)i + 1;
            f->bi[i].min_clock = 10 * i;
            f->bi[i].owned_bytes = 4096u * (uint64_t)(i + 1);
            f->bi[i].shared_bytes = 1ull << 33;
        }
        f->bi[0].kind = MLT__BRANCH_KIND__KIND_INIT;
        f->bi[1].kind = MLT__BRANCH_KIND__KIND_TEST;
        f->bi[1].has_parent = 1, f->bi[1].parent = 1;
        f->bi[1].diverged = 1;
        fill_tunables(&f->btun, 1e-3f);
        f->bi[1].tunables = &f->btun;
        h->n_branches = 2;
        h->branches = f->bip;
        break;
    case MLT__MSG_TYPE__MSG_ERROR:
        h->has_error_code = 1, h->error_code = ENOENT;
        h->error = (char *)"branch 7 does not exist";
        break;
    case MLT__MSG_TYPE__MSG_STATUS:
    case MLT__MSG_TYPE__MSG_OK:
    case MLT__MSG_TYPE__MSG_JOB_END:
    default:
        break;
    }
}

static void cmp_str(const char *what, const char *a, const char *b)
{
    if (!a || !b) {
        ck_assert_msg(a == b, "%s: one side absent", what);
        return;
    }
    ck_assert_msg(strcmp(a, b) == 0, "%s: \"%s\" != \"%s\"", what, a, b);
}

#define CMP_OPT(what, a, b, f)                                                                     \
    do {                                                                                           \
        ck_assert_msg((a)->has_##f == (b)->has_##f, "%s.%s: presence differs", what, #f);          \
        if ((a)->has_##f)                                                                          \
            ck_assert_msg((a)->f == (b)->f, "%s.%s differs", what, #f);                           \
    } while (0)

static void cmp_tunables(const char *what, const Mlt__Tunables *a, const Mlt__Tunables *b)
{
    ck_assert_msg((a == NULL) == (b == NULL), "%s: presence differs", what);
    if (!a)
        return;
    CMP_OPT(what, a, b, lr);
    CMP_OPT(what, a, b, momentum);
    CMP_OPT(what, a, b, weight_decay);
    CMP_OPT(what, a, b, staleness);
    CMP_OPT(what, a, b, beta1);
    CMP_OPT(what, a, b, beta2);
    CMP_OPT(what, a, b, eps);
    CMP_OPT(what, a, b, warmup);
}

static void cmp_job(const Mlt__JobSpec *a, const Mlt__JobSpec *b)
{
    ck_assert_msg((a == NULL) == (b == NULL), "job: presence differs");
    if (!a)
        return;
    cmp_str("job.name", a->name, b->name);
    ck_assert_uint_eq(a->n_workers, b->n_workers);
    ck_assert_int_eq(a->rule, b->rule);
    ck_assert_int_eq(a->has_average, b->has_average);
    ck_assert_int_eq(a->average, b->average);
    ck_assert_uint_eq(a->n_tables, b->n_tables);
    for (size_t i = 0; i < a->n_tables; i++) {
        const Mlt__TableSpec *x = a->tables[i], *y = b->tables[i];
        cmp_str("job.tables[].name", x->name, y->name);
        ck_assert_uint_eq(x->size, y->size);
        ck_assert_uint_eq(x->n_shape, y->n_shape);
        for (size_t d = 0; d < x->n_shape; d++)
            ck_assert_uint_eq(x->shape[d], y->shape[d]);
    }
}

static void cmp_server(const Mlt__ServerInfo *a, const Mlt__ServerInfo *b)
{
    ck_assert_msg((a == NULL) == (b == NULL), "server: presence differs");
    if (!a)
        return;
    ck_assert_uint_eq(a->rank, b->rank);
    ck_assert_uint_eq(a->n_servers, b->n_servers);
    ck_assert_uint_eq(a->chunk_floats, b->chunk_floats);
    CMP_OPT("server", a, b, memory_limit);
    CMP_OPT("server", a, b, memory_potential);
    CMP_OPT("server", a, b, memory_allocated);
    cmp_str("server.job", a->job, b->job);
}

static void cmp_header(const mlt_header_t *a, const mlt_header_t *b)
{
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_int_eq(a->type, b->type);
    CMP_OPT("header", a, b, request_id);
    CMP_OPT("header", a, b, worker);
    CMP_OPT("header", a, b, branch);
    CMP_OPT("header", a, b, parent);
    CMP_OPT("header", a, b, clock);
    CMP_OPT("header", a, b, table);
    CMP_OPT("header", a, b, chunk_first);
    CMP_OPT("header", a, b, chunk_count);
    CMP_OPT("header", a, b, kind);
    CMP_OPT("header", a, b, min_clock);
    CMP_OPT("header", a, b, error_code);
    cmp_str("error", a->error, b->error);
    cmp_tunables("tunables", a->tunables, b->tunables);
    cmp_job(a->job, b->job);
    cmp_server(a->server, b->server);
    ck_assert_uint_eq(a->n_branches, b->n_branches);
    for (size_t i = 0; i < a->n_branches; i++) {
        const Mlt__BranchInfo *x = a->branches[i], *y = b->branches[i];
        ck_assert_uint_eq(x->id, y->id);
        CMP_OPT("branches[]", x, y, parent);
        ck_assert_int_eq(x->kind, y->kind);
        ck_assert_int_eq(x->min_clock, y->min_clock);
        ck_assert_uint_eq(x->owned_bytes, y->owned_bytes);
        ck_assert_uint_eq(x->shared_bytes, y->shared_bytes);
        ck_assert_int_eq(!!x->diverged, !!y->diverged);
        cmp_tunables("branches[].tunables", x->tunables, y->tunables);
    }
}

/* Loop test over every message type 1..17. */
START_TEST(test_roundtrip_type)
{
    msg_fixture_t f;
    fill_message(&f, (Mlt__MsgType)_i);
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(&f.h, &buf);
    ck_assert_uint_gt(n, 0);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(n, mlt__header__get_packed_size(&f.h));

    char err[ERRLEN] = "";
    mlt_header_t *out = NULL;
    int rc = mlt_wire_decode(buf, n, &out, err, sizeof err);
    ck_assert_msg(rc == 0, "type %d (%s): decode returned %d (%s)", _i, mlt_wire_type_name(_i),
                  rc, err);
    ck_assert_ptr_nonnull(out);
    cmp_header(&f.h, out);

    /* decode(encode(x)) re-encodes to the same bytes */
    uint8_t *buf2 = NULL;
    size_t n2 = mlt_wire_encode(out, &buf2);
    ck_assert_uint_eq(n2, n);
    ck_assert_int_eq(memcmp(buf, buf2, n), 0);
    mlt_free(buf2);
    mlt_free(buf);
    mlt_wire_free(&out);
    ck_assert_ptr_null(out);
}
END_TEST

/* mlt_wire_init gives the current version, the type, and nothing else. */
START_TEST(test_init)
{
    mlt_header_t h;
    memset(&h, 0xa5, sizeof h);
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_STATUS);
    ck_assert_uint_eq(h.version, MLT_PROTO_VERSION);
    ck_assert_int_eq(h.type, MLT__MSG_TYPE__MSG_STATUS);
    ck_assert(!h.has_request_id && !h.has_worker && !h.has_branch && !h.has_clock);
    ck_assert_ptr_null(h.tunables);
    ck_assert_ptr_null(h.job);
    ck_assert_ptr_null(h.error);
    ck_assert_ptr_null(h.server);
    ck_assert_uint_eq(h.n_branches, 0);
    ACCEPT(&h);
}
END_TEST

/* mlt_wire_encode returns 0 when its allocation fails; mlt_wire_free takes
 * NULL and an already freed header. */
START_TEST(test_encode_oom_and_free)
{
    mlt_header_t h = base();
    uint8_t *buf = (uint8_t *)(uintptr_t)1;
    mlt_alloc_fail_after(0);
    size_t n = mlt_wire_encode(&h, &buf);
    mlt_alloc_fail_after(-1);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(buf);

    mlt_header_t *none = NULL;
    mlt_wire_free(&none);
    mlt_wire_free(NULL);
    ck_assert_ptr_null(none);
}
END_TEST

/* mlt_wire_send: a small header (stack path) and a large one (heap path) arrive
 * as one frame each and decode to what was sent. */
START_TEST(test_send)
{
    void *ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(ctx);
    void *a = zmq_socket(ctx, ZMQ_PAIR), *b = zmq_socket(ctx, ZMQ_PAIR);
    ck_assert_int_eq(zmq_bind(a, "inproc://check-wire"), 0);
    ck_assert_int_eq(zmq_connect(b, "inproc://check-wire"), 0);

    msg_fixture_t small, large;
    fill_message(&small, MLT__MSG_TYPE__MSG_CLOCK);
    fill_message(&large, MLT__MSG_TYPE__MSG_ERROR);
    char text[MLT_MAX_ERROR_LEN + 1];
    memset(text, 'e', MLT_MAX_ERROR_LEN);
    text[MLT_MAX_ERROR_LEN] = '\0';
    large.h.error = text;
    ck_assert_uint_gt(mlt__header__get_packed_size(&large.h), 512);

    const mlt_header_t *sent[] = {&small.h, &large.h};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(mlt_wire_send(a, sent[i], ZMQ_SNDMORE), 0);
        ck_assert_int_eq(zmq_send(a, "payload", 7, 0), 7);
        zmq_msg_t m;
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, b, 0), 0);
        ck_assert(zmq_msg_more(&m));
        char err[ERRLEN] = "";
        mlt_header_t *out = NULL;
        int rc = mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &out, err, sizeof err);
        ck_assert_msg(rc == 0, "decode of sent header: %d (%s)", rc, err);
        cmp_header(sent[i], out);
        mlt_wire_free(&out);
        zmq_msg_close(&m);
        char pl[16];
        ck_assert_int_eq(zmq_recv(b, pl, sizeof pl, 0), 7);
    }
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
}
END_TEST

/* ---- limits: frame ------------------------------------------------------ */

/* Appends an unknown length-delimited field (number 1000) to a valid packed
 * header so the frame is exactly `target` bytes. Returns a malloc'd buffer. */
static uint8_t *padded_frame(size_t target)
{
    mlt_header_t h = base();
    uint8_t *hb = NULL;
    size_t hn = mlt_wire_encode(&h, &hb);
    ck_assert_uint_gt(hn, 0);
    /* tag (1000 << 3 | 2) is 2 bytes; the length takes 3 bytes for our sizes */
    size_t over = hn + 2 + 3;
    ck_assert_uint_gt(target, over + 16384);
    size_t plen = target - over;
    ck_assert_uint_lt(plen, 1u << 21);
    uint8_t *buf = malloc(target);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, hb, hn);
    uint8_t *p = buf + hn;
    *p++ = (uint8_t)(((1000u << 3) | 2u) & 0x7f) | 0x80;
    *p++ = (uint8_t)(((1000u << 3) | 2u) >> 7);
    *p++ = (uint8_t)(plen & 0x7f) | 0x80;
    *p++ = (uint8_t)((plen >> 7) & 0x7f) | 0x80;
    *p++ = (uint8_t)(plen >> 14);
    memset(p, 'x', plen);
    mlt_free(hb);
    return buf;
}

START_TEST(test_header_bytes)
{
    char err[ERRLEN] = "";
    mlt_header_t *out = NULL;

    /* exactly MLT_MAX_HEADER_BYTES: accepted */
    uint8_t *buf = padded_frame(MLT_MAX_HEADER_BYTES);
    int rc = mlt_wire_decode(buf, MLT_MAX_HEADER_BYTES, &out, err, sizeof err);
    ck_assert_msg(rc == 0, "frame of exactly the limit rejected: %d (%s)", rc, err);
    ck_assert_int_eq(out->type, MLT__MSG_TYPE__MSG_PULL);
    mlt_wire_free(&out);
    free(buf);

    /* one byte more: -EMSGSIZE, whatever the bytes are */
    buf = padded_frame(MLT_MAX_HEADER_BYTES + 1);
    out = (mlt_header_t *)(uintptr_t)1;
    rc = mlt_wire_decode(buf, MLT_MAX_HEADER_BYTES + 1, &out, err, sizeof err);
    ck_assert_int_eq(rc, -EMSGSIZE);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(err, "header") && has_number(err, MLT_MAX_HEADER_BYTES + 1) &&
                      has_number(err, MLT_MAX_HEADER_BYTES),
                  "message should name the header frame, its size and the limit: %s", err);
    free(buf);
}
END_TEST

START_TEST(test_empty_and_garbage)
{
    char err[ERRLEN] = "";
    mlt_header_t *out = (mlt_header_t *)(uintptr_t)1;
    static const uint8_t one = 0;
    ck_assert_int_eq(mlt_wire_decode(&one, 0, &out, err, sizeof err), -EPROTO);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(err, "empty") != NULL, "%s", err);

    static const struct {
        const char *what;
        size_t len;
        const uint8_t *bytes;
    } bad[] = {
        {"all 0xff", 8, (const uint8_t *)"\xff\xff\xff\xff\xff\xff\xff\xff"},
        {"text", 11, (const uint8_t *)"hello world"},
        {"single zero byte", 1, (const uint8_t *)"\x00"},
        {"tag only", 1, (const uint8_t *)"\x08"},
        {"truncated varint", 2, (const uint8_t *)"\x08\x81"},
        {"type missing (required)", 2, (const uint8_t *)"\x08\x01"},
        {"version missing (required)", 2, (const uint8_t *)"\x10\x08"},
        {"length past end", 9, (const uint8_t *)"\x08\x01\x10\x08\x82\x01\x05" "ab"},
        {"wire type 7", 5, (const uint8_t *)"\x08\x01\x10\x08\x0f"},
        {"varint of 11 bytes", 15,
         (const uint8_t *)"\x08\x01\x10\x08\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        out = (mlt_header_t *)(uintptr_t)1;
        int rc = mlt_wire_decode(bad[i].bytes, bad[i].len, &out, err, sizeof err);
        ck_assert_msg(rc == -EPROTO, "%s: expected -EPROTO, got %d (%s)", bad[i].what, rc, err);
        ck_assert_ptr_null(out);
        ck_assert_msg(strstr(err, "header") != NULL, "%s: message \"%s\"", bad[i].what, err);
    }

    /* Proper prefixes of a valid frame: a prefix that ends on a field boundary
     * is itself a valid (shorter) header; every other one is -EPROTO. The
     * STATUS_REPLY ends with its branch list, so cutting inside it must fail. */
    msg_fixture_t f;
    fill_message(&f, MLT__MSG_TYPE__MSG_STATUS_REPLY);
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(&f.h, &buf);
    size_t rejected = 0;
    for (size_t len = 1; len < n; len++) {
        int rc = mlt_wire_decode(buf, len, &out, err, sizeof err);
        if (rc == 0) {
            ck_assert_ptr_nonnull(out);
            mlt_wire_free(&out);
        } else {
            ck_assert_msg(rc == -EPROTO, "prefix of %zu/%zu bytes: %d (%s)", len, n, rc, err);
            ck_assert_ptr_null(out);
            rejected++;
        }
    }
    ck_assert_int_eq(mlt_wire_decode(buf, 1, &out, err, sizeof err), -EPROTO);
    ck_assert_int_eq(mlt_wire_decode(buf, n - 1, &out, err, sizeof err), -EPROTO);
    ck_assert_uint_gt(rejected, n / 2);
    mlt_free(buf);

    /* err may be NULL or tiny */
    ck_assert_int_eq(mlt_wire_decode("\xff", 1, &out, NULL, 0), -EPROTO);
    char tiny[4] = "abc";
    ck_assert_int_eq(mlt_wire_decode("\xff", 1, &out, tiny, sizeof tiny), -EPROTO);
    ck_assert_uint_lt(strlen(tiny), sizeof tiny);
}
END_TEST

START_TEST(test_version)
{
    char msg[ERRLEN];
    mlt_header_t h = base();
    h.version = 2;
    REJECT_MSG(&h, -EPROTONOSUPPORT, "version", msg);
    ck_assert_msg(has_number(msg, 2) && has_number(msg, MLT_PROTO_VERSION),
                  "message should name both versions: %s", msg);
    h.version = 0;
    REJECT_MSG(&h, -EPROTONOSUPPORT, "version", msg);
    ck_assert_msg(has_number(msg, 0) && has_number(msg, MLT_PROTO_VERSION), "%s", msg);
    h.version = UINT32_MAX;
    REJECT(&h, -EPROTONOSUPPORT, "version");
    h.version = MLT_PROTO_VERSION;
    ACCEPT(&h);
}
END_TEST

START_TEST(test_type)
{
    char msg[ERRLEN];
    mlt_header_t h = base();
    h.type = (Mlt__MsgType)99;
    REJECT_MSG(&h, -EBADMSG, "type", msg);
    ck_assert_msg(has_number(msg, 99), "%s", msg);
    h.type = MLT__MSG_TYPE__MSG_NONE;
    REJECT_MSG(&h, -EBADMSG, "type", msg);
    ck_assert_msg(has_number(msg, 0), "%s", msg);
    h.type = (Mlt__MsgType)(MLT__MSG_TYPE__MSG_JOB_END + 1);
    REJECT(&h, -EBADMSG, "type");
    h.type = (Mlt__MsgType)-1;
    REJECT(&h, -EBADMSG, "type");
    h.type = MLT__MSG_TYPE__MSG_HELLO;
    ACCEPT(&h);
    h.type = MLT__MSG_TYPE__MSG_JOB_END;
    ACCEPT(&h);
}
END_TEST

/* TASK_RUN/TASK_TEST data shares (#12): both fields or neither, share below
 * share_count, share_count in [1, MLT_MAX_WORKERS]. */
START_TEST(test_task_share)
{
    Mlt__Task t;
    mlt__task__init(&t);
    t.kind = MLT__TASK_KIND__TASK_RUN;
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_TASK);
    h.task = &t;
    ACCEPT(&h); /* neither: the worker's own rank of n_workers */
    t.has_share = t.has_share_count = 1;
    t.share = 0;
    t.share_count = 1;
    ACCEPT(&h);
    t.share = MLT_MAX_WORKERS - 1;
    t.share_count = MLT_MAX_WORKERS;
    ACCEPT(&h);
    t.share_count = MLT_MAX_WORKERS + 1;
    REJECT(&h, -EINVAL, "task.share");
    t.share = 2;
    t.share_count = 2;
    REJECT(&h, -EINVAL, "task.share");
    t.share = 0;
    t.share_count = 0;
    REJECT(&h, -EINVAL, "task.share");
    t.share_count = 1;
    t.has_share_count = 0; /* one without the other */
    REJECT(&h, -EINVAL, "task.share");
    t.has_share = 0;
    t.has_share_count = 1;
    REJECT(&h, -EINVAL, "task.share");
}
END_TEST

/* ---- names -------------------------------------------------------------- */

START_TEST(test_names_known)
{
    ck_assert_str_eq(mlt_wire_type_name(MLT__MSG_TYPE__MSG_HELLO), "HELLO");
    ck_assert_str_eq(mlt_wire_type_name(MLT__MSG_TYPE__MSG_PULL), "PULL");
    ck_assert_str_eq(mlt_wire_type_name(MLT__MSG_TYPE__MSG_PULL_REPLY), "PULL_REPLY");
    ck_assert_str_eq(mlt_wire_type_name(MLT__MSG_TYPE__MSG_ERROR), "ERROR");
    ck_assert_str_eq(mlt_wire_type_name(MLT__MSG_TYPE__MSG_JOB_END), "JOB_END");
    /* every type has a distinct name, the enum name without "MSG_" */
    for (int t = MLT__MSG_TYPE__MSG_HELLO; t <= MLT__MSG_TYPE__MSG_JOB_END; t++) {
        const char *n = mlt_wire_type_name(t);
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(&mlt__msg_type__descriptor, t);
        ck_assert_ptr_nonnull(v);
        ck_assert_str_eq(n, v->name + 4);
        for (int u = MLT__MSG_TYPE__MSG_HELLO; u < t; u++)
            ck_assert_str_ne(n, mlt_wire_type_name(u));
    }
}
END_TEST

START_TEST(test_names_unknown)
{
    const int unknown[] = {MLT__MSG_TYPE__MSG_JOB_END + 1, 99, -1, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_str_eq(mlt_wire_type_name(unknown[i]), "?");
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");

    TCase *tc = tcase_create("roundtrip");
    tcase_add_loop_test(tc, test_roundtrip_type, MLT__MSG_TYPE__MSG_HELLO,
                        MLT__MSG_TYPE__MSG_JOB_END + 1);
    tcase_add_test(tc, test_init);
    tcase_add_test(tc, test_encode_oom_and_free);
    tcase_add_test(tc, test_send);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, test_header_bytes);
    tcase_add_test(tc, test_empty_and_garbage);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_type);
    tcase_add_test(tc, test_task_share);
    suite_add_tcase(s, tc);

    wire_limits_tcases(s);

    tc = tcase_create("names");
    tcase_add_test(tc, test_names_known);
    tcase_add_test(tc, test_names_unknown);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wire_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
