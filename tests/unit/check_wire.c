/* check_wire.c - Check suite for proto/wire (frame 0 of every message).
 *
 * "roundtrip": every message type, filled with the fields its flow carries, is
 * encoded with mlt_wire_encode (and sent over an inproc socket with
 * mlt_wire_send), decoded, and compared field by field.
 * "limits": one test per limit in proto/limits.h and per return code of
 * mlt_wire_decode; each bounded field is tried just inside and just outside its
 * range, and every rejection must name the offending field in its message.
 * "names": mlt_wire_type_name for known and unknown types.
 *
 * Frames are built from Mlt__Header structs (mlt_wire_init) and packed with
 * mlt_wire_encode; out-of-range enum values are plain int assignments. */
#include "proto/wire.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"

#define ERRLEN 256

/* ---- helpers ------------------------------------------------------------ */

/* Packs h with mlt_wire_encode and decodes the bytes. */
static int decode_hdr(const mlt_header_t *h, mlt_header_t **out, char *err, size_t errlen)
{
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(h, &buf);
    ck_assert_msg(n > 0 && buf != NULL, "mlt_wire_encode failed");
    int rc = mlt_wire_decode(buf, n, out, err, errlen);
    mlt_free(buf);
    return rc;
}

/* true if s contains the decimal number v as a whole token (sign included). */
static int has_number(const char *s, long long v)
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

#define ACCEPT(h) accept_((h), __LINE__)
static void accept_(const mlt_header_t *h, int line)
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
#define REJECT(h, code, field) reject_((h), (code), (field), NULL, __LINE__)
#define REJECT_MSG(h, code, field, msg) reject_((h), (code), (field), (msg), __LINE__)
static void reject_(const mlt_header_t *h, int code, const char *field, char *msg, int line)
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
static mlt_header_t base(void)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_PULL);
    return h;
}

/* Valid job spec with one table "w" of 6 floats, shape {2, 3}. */
typedef struct {
    Mlt__JobSpec job;
    Mlt__TableSpec t[2];
    Mlt__TableSpec *tp[2];
    uint32_t shape[2][MLT_MAX_SHAPE_DIMS + 1];
} job_fixture_t;

static void job_init(job_fixture_t *f)
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

static mlt_header_t with_job(Mlt__JobSpec *job)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_REGISTER);
    h.job = job;
    return h;
}

static mlt_header_t with_tunables(Mlt__Tunables *t)
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

static void fill_tunables(Mlt__Tunables *t, float lr)
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

/* ---- limits: header fields ---------------------------------------------- */

START_TEST(test_worker)
{
    char msg[ERRLEN];
    mlt_header_t h = base();
    h.has_worker = 1;
    h.worker = 0;
    ACCEPT(&h);
    h.worker = MLT_MAX_WORKERS - 1;
    ACCEPT(&h);
    h.worker = MLT_MAX_WORKERS;
    REJECT_MSG(&h, -EINVAL, "worker", msg);
    ck_assert_msg(has_number(msg, MLT_MAX_WORKERS), "%s", msg);
    h.worker = UINT32_MAX;
    REJECT(&h, -EINVAL, "worker");
}
END_TEST

START_TEST(test_branch)
{
    mlt_header_t h = base();
    h.has_branch = 1;
    h.branch = 0;
    ACCEPT(&h);
    h.branch = MLT_MAX_BRANCH_ID;
    ACCEPT(&h);
    h.branch = MLT_MAX_BRANCH_ID + 1u;
    REJECT(&h, -EINVAL, "branch");
    h.branch = UINT32_MAX;
    REJECT(&h, -EINVAL, "branch");
}
END_TEST

START_TEST(test_parent)
{
    mlt_header_t h = base();
    h.type = MLT__MSG_TYPE__MSG_FORK;
    h.has_parent = 1;
    h.parent = 0;
    ACCEPT(&h);
    h.parent = MLT_MAX_BRANCH_ID;
    ACCEPT(&h);
    h.parent = MLT_MAX_BRANCH_ID + 1u;
    REJECT(&h, -EINVAL, "parent");
    h.parent = UINT32_MAX;
    REJECT(&h, -EINVAL, "parent");
}
END_TEST

START_TEST(test_clock)
{
    char msg[ERRLEN];
    mlt_header_t h = base();
    h.has_clock = 1;
    h.clock = 0;
    ACCEPT(&h);
    h.clock = MLT_MAX_CLOCK;
    ACCEPT(&h);
    h.clock = MLT_MAX_CLOCK + 1;
    REJECT(&h, -EINVAL, "clock");
    h.clock = -1;
    REJECT_MSG(&h, -EINVAL, "clock", msg);
    ck_assert_msg(has_number(msg, -1), "%s", msg);
    h.clock = INT64_MIN;
    REJECT(&h, -EINVAL, "clock");
    h.clock = INT64_MAX;
    REJECT(&h, -EINVAL, "clock");
}
END_TEST

/* #15: a traced reply carries MLT_TRACE_STAMPS stamps, never more */
START_TEST(test_trace_stamps)
{
    uint64_t stamps[MLT_TRACE_STAMPS + 1] = {1, 2, 3, 4, 5, 6, 7};
    mlt_header_t h = base();
    h.has_trace = h.trace = 1;
    ACCEPT(&h);
    h.n_trace_ns = MLT_TRACE_STAMPS;
    h.trace_ns = stamps;
    ACCEPT(&h);
    h.n_trace_ns = MLT_TRACE_STAMPS + 1;
    REJECT(&h, -EINVAL, "trace_ns");
}
END_TEST

START_TEST(test_table)
{
    mlt_header_t h = base();
    h.has_table = 1;
    h.table = 0;
    ACCEPT(&h);
    h.table = MLT_MAX_TABLES - 1;
    ACCEPT(&h);
    h.table = MLT_MAX_TABLES;
    REJECT(&h, -EINVAL, "table");
    h.table = UINT32_MAX;
    REJECT(&h, -EINVAL, "table");
}
END_TEST

START_TEST(test_chunk_count)
{
    mlt_header_t h = base();
    h.has_chunk_count = 1;
    h.chunk_count = 0;
    REJECT(&h, -EINVAL, "chunk_count");
    h.chunk_count = 1;
    ACCEPT(&h);
    /* frames include the header, so at most MLT_MAX_FRAMES - 1 chunks */
    h.chunk_count = MLT_MAX_FRAMES - 1;
    ACCEPT(&h);
    h.chunk_count = MLT_MAX_FRAMES;
    REJECT(&h, -EINVAL, "chunk_count");
    h.chunk_count = UINT32_MAX;
    REJECT(&h, -EINVAL, "chunk_count");
}
END_TEST

START_TEST(test_kind)
{
    mlt_header_t h = base();
    h.type = MLT__MSG_TYPE__MSG_FORK;
    h.has_kind = 1;
    for (int k = MLT__BRANCH_KIND__KIND_INIT; k <= MLT__BRANCH_KIND__KIND_SNAPSHOT; k++) {
        h.kind = (Mlt__BranchKind)k;
        ACCEPT(&h);
    }
    h.kind = (Mlt__BranchKind)(MLT__BRANCH_KIND__KIND_SNAPSHOT + 1);
    REJECT(&h, -EINVAL, "kind");
    h.kind = (Mlt__BranchKind)-1;
    REJECT(&h, -EINVAL, "kind");
    h.kind = (Mlt__BranchKind)INT32_MAX;
    REJECT(&h, -EINVAL, "kind");
}
END_TEST

START_TEST(test_error_text)
{
    char text[MLT_MAX_ERROR_LEN + 2];
    mlt_header_t h = base();
    h.type = MLT__MSG_TYPE__MSG_ERROR;
    h.has_error_code = 1;
    h.error_code = EINVAL;
    h.error = (char *)"";
    ACCEPT(&h);
    memset(text, 'e', sizeof text);
    text[MLT_MAX_ERROR_LEN] = '\0';
    h.error = text;
    ACCEPT(&h);
    text[MLT_MAX_ERROR_LEN] = 'e';
    text[MLT_MAX_ERROR_LEN + 1] = '\0';
    REJECT(&h, -EINVAL, "error");
}
END_TEST

START_TEST(test_n_branches)
{
    const size_t n = MLT_MAX_BRANCHES + 1;
    Mlt__BranchInfo *bi = calloc(n, sizeof *bi);
    Mlt__BranchInfo **bp = calloc(n, sizeof *bp);
    ck_assert(bi && bp);
    for (size_t i = 0; i < n; i++) {
        mlt__branch_info__init(&bi[i]);
        bp[i] = &bi[i];
    }
    mlt_header_t h = base();
    h.type = MLT__MSG_TYPE__MSG_STATUS_REPLY;
    h.branches = bp;
    h.n_branches = 0;
    ACCEPT(&h);
    h.n_branches = MLT_MAX_BRANCHES;
    ACCEPT(&h);
    h.n_branches = MLT_MAX_BRANCHES + 1;
    ck_assert_uint_le(mlt__header__get_packed_size(&h), MLT_MAX_HEADER_BYTES);
    REJECT(&h, -EINVAL, "branches");
    free(bp);
    free(bi);
}
END_TEST

/* ---- limits: tunables --------------------------------------------------- */

/* Sets tunables field `name` to v (and marks it present). */
static void set_tunable(Mlt__Tunables *t, const char *name, float v)
{
    mlt__tunables__init(t);
    if (!strcmp(name, "lr"))
        t->has_lr = 1, t->lr = v;
    else if (!strcmp(name, "momentum"))
        t->has_momentum = 1, t->momentum = v;
    else if (!strcmp(name, "weight_decay"))
        t->has_weight_decay = 1, t->weight_decay = v;
    else if (!strcmp(name, "beta1"))
        t->has_beta1 = 1, t->beta1 = v;
    else if (!strcmp(name, "beta2"))
        t->has_beta2 = 1, t->beta2 = v;
    else if (!strcmp(name, "eps"))
        t->has_eps = 1, t->eps = v;
    else
        ck_abort_msg("no tunable %s", name);
}

/* Checks float tunable `name`: lo and hi accepted, NaN, +-inf, just below lo
 * and just above hi rejected, each through mlt_wire_decode and directly
 * through mlt_wire_check_tunables. */
static void check_float_tunable(const char *name, float lo, float hi)
{
    char field[32], err[ERRLEN];
    snprintf(field, sizeof field, "tunables.%s", name);
    Mlt__Tunables t;
    mlt_header_t h = with_tunables(&t);

    const float good[] = {lo, hi, (lo + hi) / 2};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        set_tunable(&t, name, good[i]);
        ACCEPT(&h);
        ck_assert_int_eq(mlt_wire_check_tunables(&t, err, sizeof err), 0);
    }
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY, nextafterf(lo, -INFINITY),
                         nextafterf(hi, INFINITY), -1.0f};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_tunable(&t, name, bad[i]);
        REJECT(&h, -EINVAL, field);
        err[0] = '\0';
        ck_assert_int_eq(mlt_wire_check_tunables(&t, err, sizeof err), -EINVAL);
        ck_assert_msg(strstr(err, field) != NULL, "%s: %s", field, err);
    }
}

START_TEST(test_tunables_lr)
{
    check_float_tunable("lr", 0.0f, 1e6f);
}
END_TEST

START_TEST(test_tunables_momentum)
{
    check_float_tunable("momentum", 0.0f, 1.0f);
}
END_TEST

START_TEST(test_tunables_weight_decay)
{
    check_float_tunable("weight_decay", 0.0f, 1e3f);
}
END_TEST

START_TEST(test_tunables_betas_eps)
{
    check_float_tunable("beta1", 0.0f, 1.0f);
    check_float_tunable("beta2", 0.0f, 1.0f);
    check_float_tunable("eps", 0.0f, 1.0f);
}
END_TEST

START_TEST(test_tunables_staleness_warmup)
{
    Mlt__Tunables t;
    mlt__tunables__init(&t);
    mlt_header_t h = with_tunables(&t);
    t.has_staleness = 1;
    t.staleness = 0;
    ACCEPT(&h);
    t.staleness = MLT_MAX_STALENESS;
    ACCEPT(&h);
    t.staleness = MLT_MAX_STALENESS + 1;
    REJECT(&h, -EINVAL, "tunables.staleness");
    t.staleness = UINT32_MAX;
    REJECT(&h, -EINVAL, "tunables.staleness");
    t.staleness = 0;
    t.has_warmup = 1;
    t.warmup = MLT_MAX_WARMUP;
    ACCEPT(&h);
    t.warmup = MLT_MAX_WARMUP + 1;
    REJECT(&h, -EINVAL, "tunables.warmup");
    t.warmup = UINT32_MAX;
    REJECT(&h, -EINVAL, "tunables.warmup");
    /* all fields present and in range */
    fill_tunables(&t, 1e6f);
    ACCEPT(&h);
}
END_TEST

/* ---- limits: job spec --------------------------------------------------- */

/* Expects the job to be rejected through decode and mlt_wire_check_job. */
#define REJECT_JOB(f, field) reject_job_((f), (field), __LINE__)
static void reject_job_(job_fixture_t *f, const char *field, int line)
{
    mlt_header_t h = with_job(&f->job);
    reject_(&h, -EINVAL, field, NULL, line);
    char err[ERRLEN] = "";
    ck_assert_msg(mlt_wire_check_job(&f->job, err, sizeof err) == -EINVAL,
                  "line %d: mlt_wire_check_job accepted", line);
    ck_assert_msg(strstr(err, field) != NULL, "line %d: \"%s\" does not name %s", line, err, field);
}

#define ACCEPT_JOB(f) accept_job_((f), __LINE__)
static void accept_job_(job_fixture_t *f, int line)
{
    mlt_header_t h = with_job(&f->job);
    accept_(&h, line);
    char err[ERRLEN] = "";
    ck_assert_msg(mlt_wire_check_job(&f->job, err, sizeof err) == 0, "line %d: %s", line, err);
}

START_TEST(test_job_name)
{
    job_fixture_t f;
    char name[MLT_MAX_NAME_LEN + 2];
    job_init(&f);
    ACCEPT_JOB(&f);
    f.job.name = (char *)"";
    REJECT_JOB(&f, "job.name");
    memset(name, 'n', sizeof name);
    name[MLT_MAX_NAME_LEN] = '\0';
    f.job.name = name;
    ACCEPT_JOB(&f);
    name[MLT_MAX_NAME_LEN] = 'n';
    name[MLT_MAX_NAME_LEN + 1] = '\0';
    REJECT_JOB(&f, "job.name");
}
END_TEST

START_TEST(test_job_workers)
{
    job_fixture_t f;
    job_init(&f);
    f.job.n_workers = 0;
    REJECT_JOB(&f, "n_workers");
    f.job.n_workers = 1;
    ACCEPT_JOB(&f);
    f.job.n_workers = MLT_MAX_WORKERS;
    ACCEPT_JOB(&f);
    f.job.n_workers = MLT_MAX_WORKERS + 1;
    REJECT_JOB(&f, "n_workers");
    f.job.n_workers = UINT32_MAX;
    REJECT_JOB(&f, "n_workers");
}
END_TEST

START_TEST(test_job_rule)
{
    job_fixture_t f;
    job_init(&f);
    for (int r = MLT__RULE__RULE_SGD; r <= MLT__RULE__RULE_SF_ADAMW; r++) {
        f.job.rule = (Mlt__Rule)r;
        ACCEPT_JOB(&f);
    }
    f.job.rule = (Mlt__Rule)(MLT__RULE__RULE_SF_ADAMW + 1);
    REJECT_JOB(&f, "rule");
    f.job.rule = (Mlt__Rule)-1;
    REJECT_JOB(&f, "rule");
}
END_TEST

START_TEST(test_job_n_tables)
{
    job_fixture_t f;
    job_init(&f);
    f.job.n_tables = 0;
    REJECT_JOB(&f, "tables");

    const size_t n = MLT_MAX_TABLES + 1;
    Mlt__TableSpec *t = calloc(n, sizeof *t);
    Mlt__TableSpec **tp = calloc(n, sizeof *tp);
    char(*names)[8] = calloc(n, sizeof *names);
    ck_assert(t && tp && names);
    for (size_t i = 0; i < n; i++) {
        mlt__table_spec__init(&t[i]);
        snprintf(names[i], sizeof names[i], "t%zu", i);
        t[i].name = names[i];
        t[i].size = 1;
        tp[i] = &t[i];
    }
    f.job.tables = tp;
    f.job.n_tables = MLT_MAX_TABLES;
    ACCEPT_JOB(&f);
    f.job.n_tables = MLT_MAX_TABLES + 1;
    mlt_header_t h = with_job(&f.job);
    ck_assert_uint_le(mlt__header__get_packed_size(&h), MLT_MAX_HEADER_BYTES);
    REJECT_JOB(&f, "tables");
    free(names);
    free(tp);
    free(t);
}
END_TEST

START_TEST(test_job_table_name)
{
    job_fixture_t f;
    char name[MLT_MAX_NAME_LEN + 2];
    job_init(&f);
    f.job.n_tables = 2;
    f.t[1].name = (char *)"";
    REJECT_JOB(&f, "job.tables[1].name");
    memset(name, 't', sizeof name);
    name[MLT_MAX_NAME_LEN] = '\0';
    f.t[1].name = name;
    ACCEPT_JOB(&f);
    name[MLT_MAX_NAME_LEN] = 't';
    name[MLT_MAX_NAME_LEN + 1] = '\0';
    REJECT_JOB(&f, "job.tables[1].name");
}
END_TEST

/* Table names come from the wire and are quoted in error messages, which must
 * stay one line (wire.h) since the daemon logs them and sends them back. */
START_TEST(test_job_table_name_in_message)
{
    job_fixture_t f;
    job_init(&f);
    /* a name that would break a log line is refused itself, before it can be
     * quoted in any other message */
    f.t[0].name = (char *)"w\nfake log line";
    f.t[0].size = 0;
    REJECT_JOB(&f, "name");
    f.t[0].size = 7; /* shape {2, 3} */
    REJECT_JOB(&f, "name");
    f.t[0].name = (char *)"w'x";
    REJECT_JOB(&f, "name");
    f.t[0].name = (char *)"fc1.w";
    REJECT_JOB(&f, "shape");
}
END_TEST

START_TEST(test_job_table_size)
{
    job_fixture_t f;
    job_init(&f);
    f.job.n_tables = 2; /* table 1 ("b") has no shape */
    f.t[1].size = 0;
    REJECT_JOB(&f, "size");
    f.t[1].size = 1;
    ACCEPT_JOB(&f);
    f.t[1].size = MLT_MAX_TABLE_FLOATS;
    ACCEPT_JOB(&f);
    f.t[1].size = MLT_MAX_TABLE_FLOATS + 1;
    REJECT_JOB(&f, "size");
    f.t[1].size = UINT64_MAX;
    REJECT_JOB(&f, "size");
}
END_TEST

START_TEST(test_job_shape_dims)
{
    job_fixture_t f;
    job_init(&f);
    f.t[0].size = 6;
    for (size_t d = 0; d < MLT_MAX_SHAPE_DIMS + 1; d++)
        f.shape[0][d] = 1;
    f.shape[0][0] = 2;
    f.shape[0][1] = 3;
    f.t[0].n_shape = MLT_MAX_SHAPE_DIMS;
    ACCEPT_JOB(&f);
    f.t[0].n_shape = MLT_MAX_SHAPE_DIMS + 1;
    REJECT_JOB(&f, "shape");
}
END_TEST

START_TEST(test_job_shape_product)
{
    job_fixture_t f;
    job_init(&f);
    f.t[0].size = 7; /* shape {2, 3} */
    REJECT_JOB(&f, "shape");
    f.t[0].size = 6;
    ACCEPT_JOB(&f);
    f.shape[0][1] = 0; /* {2, 0} */
    REJECT_JOB(&f, "shape");
    /* product past the limit: {2^17, 2^17, 2^17} = 2^51 */
    f.t[0].n_shape = 3;
    f.shape[0][0] = f.shape[0][1] = f.shape[0][2] = 1u << 17;
    f.t[0].size = MLT_MAX_TABLE_FLOATS;
    REJECT_JOB(&f, "shape");
    /* largest table, exact product: {2^17, 2^17} = 2^34 */
    f.t[0].n_shape = 2;
    ACCEPT_JOB(&f);
}
END_TEST

/* A product that wraps around 2^64 must not pass as equal to the size:
 * 2 * 2147483649 * 4294967295 = 2^65 + 2^32 - 2 == 4294967294 (mod 2^64). */
START_TEST(test_job_shape_product_overflow)
{
    job_fixture_t f;
    job_init(&f);
    f.t[0].n_shape = 3;
    f.shape[0][0] = 2;
    f.shape[0][1] = 2147483649u;
    f.shape[0][2] = 4294967295u;
    f.t[0].size = 4294967294ull;
    REJECT_JOB(&f, "shape");
}
END_TEST

START_TEST(test_job_duplicate_tables)
{
    job_fixture_t f;
    job_init(&f);
    f.job.n_tables = 2;
    ACCEPT_JOB(&f);
    f.t[1].name = (char *)"w";
    f.t[1].size = 6;
    REJECT_JOB(&f, "name");
    char msg[ERRLEN] = "";
    mlt_wire_check_job(&f.job, msg, sizeof msg);
    ck_assert_msg(strstr(msg, "'w'") != NULL, "message should name the table: %s", msg);
}
END_TEST

/* ---- limits: server info ------------------------------------------------ */

START_TEST(test_server_info)
{
    Mlt__ServerInfo s;
    mlt__server_info__init(&s);
    mlt_header_t h = base();
    h.type = MLT__MSG_TYPE__MSG_STATUS_REPLY;
    h.server = &s;
    s.rank = 0, s.n_servers = 1, s.chunk_floats = 1;
    ACCEPT(&h);

    s.n_servers = 0;
    REJECT(&h, -EINVAL, "server");
    s.n_servers = MLT_MAX_SERVERS, s.rank = MLT_MAX_SERVERS - 1;
    ACCEPT(&h);
    s.n_servers = MLT_MAX_SERVERS + 1, s.rank = 0;
    REJECT(&h, -EINVAL, "server");

    s.n_servers = 4, s.rank = 3;
    ACCEPT(&h);
    s.rank = 4;
    REJECT(&h, -EINVAL, "server");
    s.rank = 0;

    s.chunk_floats = 0;
    REJECT(&h, -EINVAL, "server");
    s.chunk_floats = MLT_MAX_CHUNK_BYTES / 4;
    ACCEPT(&h);
    s.chunk_floats = MLT_MAX_CHUNK_BYTES / 4 + 1;
    REJECT(&h, -EINVAL, "server");
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
    tcase_add_test(tc, test_worker);
    tcase_add_test(tc, test_branch);
    tcase_add_test(tc, test_parent);
    tcase_add_test(tc, test_clock);
    tcase_add_test(tc, test_trace_stamps);
    tcase_add_test(tc, test_task_share);
    tcase_add_test(tc, test_table);
    tcase_add_test(tc, test_chunk_count);
    tcase_add_test(tc, test_kind);
    tcase_add_test(tc, test_error_text);
    tcase_add_test(tc, test_n_branches);
    tcase_add_test(tc, test_tunables_lr);
    tcase_add_test(tc, test_tunables_momentum);
    tcase_add_test(tc, test_tunables_weight_decay);
    tcase_add_test(tc, test_tunables_betas_eps);
    tcase_add_test(tc, test_tunables_staleness_warmup);
    tcase_add_test(tc, test_job_name);
    tcase_add_test(tc, test_job_workers);
    tcase_add_test(tc, test_job_rule);
    tcase_add_test(tc, test_job_n_tables);
    tcase_add_test(tc, test_job_table_name);
    tcase_add_test(tc, test_job_table_name_in_message);
    tcase_add_test(tc, test_job_table_size);
    tcase_add_test(tc, test_job_shape_dims);
    tcase_add_test(tc, test_job_shape_product);
    tcase_add_test(tc, test_job_shape_product_overflow);
    tcase_add_test(tc, test_job_duplicate_tables);
    tcase_add_test(tc, test_server_info);
    suite_add_tcase(s, tc);

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
