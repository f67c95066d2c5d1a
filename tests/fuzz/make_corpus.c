/* make_corpus.c - writes the seed corpus for fuzz_wire into a directory.
 *
 * Seeds: one valid header of every message type with the fields its flow
 * carries, plus variants just outside each limit (version, type, bounded
 * fields, tunables, job spec, server info) and malformed frames (empty,
 * garbage, truncated). Not built by default; regenerate with
 *   ninja -C build tests/fuzz/make_corpus && build/tests/fuzz/make_corpus tests/fuzz/corpus/wire
 * Output is deterministic; each seed is checked to be accepted when its name
 * starts with ok_, rejected when it starts with bad_ (replay.c checks the
 * same on every test run). */
#include "proto/wire.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

static const char *dir;
static int failures;

/* Seeds named bad_* must be rejected, those named ok_* accepted (the names
 * tests/fuzz/replay.c checks); any other name is a mistake here. */
static void verify(const char *name, const void *buf, size_t len)
{
    char err[256] = "";
    mlt_header_t *h = NULL;
    int rc = mlt_wire_decode(buf, len, &h, err, sizeof err);
    mlt_wire_free(&h);
    int want_bad = strncmp(name, "bad_", 4) == 0;
    if (!want_bad && strncmp(name, "ok_", 3) != 0) {
        fprintf(stderr, "%s: a seed's name starts with ok_ or bad_\n", name);
        failures++;
    } else if ((rc != 0) != want_bad) {
        fprintf(stderr, "%s: decode returned %d (%s)\n", name, rc, err);
        failures++;
    }
}

static void write_file(const char *name, const void *buf, size_t len)
{
    verify(name, buf, len);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        failures++;
    }
}

/* Encodes h and writes the first len bytes (all if len is 0). */
static void emit_cut(const char *name, const mlt_header_t *h, size_t len)
{
    uint8_t *buf = NULL;
    size_t n = mlt_wire_encode(h, &buf);
    if (n == 0) {
        fprintf(stderr, "%s: encode failed\n", name);
        failures++;
        return;
    }
    write_file(name, buf, len && len < n ? len : n);
    mlt_free(buf);
}

static void emit(const char *name, const mlt_header_t *h)
{
    emit_cut(name, h, 0);
}

static Mlt__Tunables tunables(void)
{
    Mlt__Tunables t;
    mlt__tunables__init(&t);
    t.has_lr = 1, t.lr = 0.01f;
    t.has_momentum = 1, t.momentum = 0.9f;
    t.has_weight_decay = 1, t.weight_decay = 1e-4f;
    t.has_staleness = 1, t.staleness = 2;
    t.has_beta1 = 1, t.beta1 = 0.9f;
    t.has_beta2 = 1, t.beta2 = 0.999f;
    t.has_eps = 1, t.eps = 1e-8f;
    return t;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    mlt_header_t h;

    /* ---- one valid header per type ---- */
    static const struct {
        Mlt__MsgType type;
        const char *name;
    } plain[] = {
        {MLT__MSG_TYPE__MSG_STATUS, "ok_status"},
        {MLT__MSG_TYPE__MSG_OK, "ok_ok"},
        {MLT__MSG_TYPE__MSG_JOB_END, "ok_job_end"},
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        mlt_wire_init(&h, plain[i].type);
        h.has_request_id = 1, h.request_id = 1000 + i;
        emit(plain[i].name, &h);
    }

    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_HELLO);
    h.has_worker = 1, h.worker = 3;
    emit("ok_hello", &h);
    h.type = MLT__MSG_TYPE__MSG_HEARTBEAT;
    emit("ok_heartbeat", &h);
    h.worker = MLT_MAX_WORKERS;
    emit("bad_worker", &h);

    Mlt__TableSpec t[2];
    Mlt__TableSpec *tp[2] = {&t[0], &t[1]};
    uint32_t shape[MLT_MAX_SHAPE_DIMS + 1] = {2, 3, 1, 1, 1, 1, 1, 1, 1};
    mlt__table_spec__init(&t[0]);
    mlt__table_spec__init(&t[1]);
    t[0].name = (char *)"conv1.w", t[0].size = 6, t[0].n_shape = 2, t[0].shape = shape;
    t[1].name = (char *)"conv1.b", t[1].size = 3;
    Mlt__JobSpec job;
    mlt__job_spec__init(&job);
    job.name = (char *)"cifar";
    job.n_workers = 8;
    job.rule = MLT__RULE__RULE_NESTEROV;
    job.n_tables = 2;
    job.tables = tp;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_REGISTER);
    h.job = &job;
    emit("ok_register", &h);
    emit_cut("bad_register_truncated", &h, 20);
    t[1].name = (char *)"conv1.w";
    emit("bad_job_duplicate_table", &h);
    t[1].name = (char *)"conv1.b";
    t[0].size = 7;
    emit("bad_job_shape_product", &h);
    t[0].size = 6, t[0].n_shape = MLT_MAX_SHAPE_DIMS + 1;
    emit("bad_job_shape_dims", &h);
    t[0].n_shape = 2;
    job.rule = (Mlt__Rule)99; /* no such rule */
    emit("bad_job_rule", &h);
    job.rule = MLT__RULE__RULE_ADAM, job.name = (char *)"";
    emit("bad_job_name", &h);

    Mlt__Tunables tun = tunables();
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_BRANCH_CREATE);
    h.has_branch = 1, h.branch = 0;
    h.has_kind = 1, h.kind = MLT__BRANCH_KIND__KIND_TRAIN;
    h.tunables = &tun;
    emit("ok_branch_create", &h);
    h.kind = (Mlt__BranchKind)99; /* no such kind */
    emit("bad_kind", &h);
    h.kind = MLT__BRANCH_KIND__KIND_TRAIN;
    h.type = MLT__MSG_TYPE__MSG_SET_TUNABLES;
    h.has_kind = 0;
    emit("ok_set_tunables", &h);
    tun.lr = NAN;
    emit("bad_tunables_lr_nan", &h);
    tun.lr = 0.01f, tun.staleness = MLT_MAX_STALENESS + 1;
    emit("bad_tunables_staleness", &h);

    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_FORK);
    h.has_branch = 1, h.branch = 5;
    h.has_parent = 1, h.parent = 1;
    h.has_kind = 1, h.kind = MLT__BRANCH_KIND__KIND_EVAL;
    emit("ok_fork", &h);

    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_FREE);
    h.has_branch = 1, h.branch = 5;
    emit("ok_free", &h);

    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_WRITE);
    h.has_worker = 1, h.worker = 0;
    h.has_branch = 1, h.branch = 1;
    h.has_table = 1, h.table = 1;
    h.has_chunk_first = 1, h.chunk_first = 0;
    h.has_chunk_count = 1, h.chunk_count = 4;
    emit("ok_write", &h);
    h.type = MLT__MSG_TYPE__MSG_PUSH;
    emit("ok_push", &h);
    h.chunk_count = 0;
    emit("bad_chunk_count", &h);
    h.chunk_count = 4;
    h.type = MLT__MSG_TYPE__MSG_PULL;
    h.has_clock = 1, h.clock = 12;
    emit("ok_pull", &h);
    h.clock = -1;
    emit("bad_clock", &h);

    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_PULL_REPLY);
    h.has_min_clock = 1, h.min_clock = 11;
    h.has_chunk_first = 1, h.chunk_first = 0;
    h.has_chunk_count = 1, h.chunk_count = 4;
    emit("ok_pull_reply", &h);

    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_CLOCK);
    h.has_worker = 1, h.worker = 1;
    h.has_branch = 1, h.branch = 1;
    h.has_clock = 1, h.clock = 13;
    emit("ok_clock", &h);
    h.version = 2;
    emit("bad_version", &h);
    h.version = MLT_PROTO_VERSION, h.type = (Mlt__MsgType)99;
    emit("bad_type_99", &h);
    h.type = MLT__MSG_TYPE__MSG_NONE;
    emit("bad_type_0", &h);

    Mlt__ServerInfo srv;
    mlt__server_info__init(&srv);
    srv.rank = 0, srv.n_servers = 2, srv.chunk_floats = 1024;
    srv.has_memory_limit = 1, srv.memory_limit = 1ull << 32;
    srv.has_memory_potential = 1, srv.memory_potential = 1ull << 20;
    srv.has_memory_allocated = 1, srv.memory_allocated = 1ull << 19;
    srv.job = (char *)"cifar";
    Mlt__Tunables btun = tunables();
    Mlt__BranchInfo bi[2];
    Mlt__BranchInfo *bip[2] = {&bi[0], &bi[1]};
    for (int i = 0; i < 2; i++) {
        mlt__branch_info__init(&bi[i]);
        bi[i].id = (uint32_t)i;
        bi[i].kind = MLT__BRANCH_KIND__KIND_TRAIN;
        bi[i].min_clock = 3;
        bi[i].owned_bytes = 4096;
        bi[i].shared_bytes = 8192;
    }
    bi[1].has_parent = 1, bi[1].parent = 0, bi[1].diverged = 1, bi[1].tunables = &btun;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_STATUS_REPLY);
    h.server = &srv;
    h.n_branches = 2;
    h.branches = bip;
    emit("ok_status_reply", &h);
    emit_cut("bad_status_reply_truncated", &h, 40);
    srv.rank = 2;
    emit("bad_server_rank", &h);

    char text[MLT_MAX_ERROR_LEN + 2];
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_ERROR);
    h.has_request_id = 1, h.request_id = 7;
    h.has_error_code = 1, h.error_code = ENOENT;
    h.error = (char *)"branch 9 does not exist";
    emit("ok_error", &h);
    memset(text, 'e', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    h.error = text;
    emit("bad_error_text", &h);

    /* ---- malformed frames ---- */
    write_file("bad_empty", "", 0);
    write_file("bad_garbage", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    write_file("bad_wire_type", "\x08\x01\x10\x08\x0f", 5);
    write_file("bad_length_past_end", "\x08\x01\x10\x08\x82\x01\x05" "ab", 9);
    /* valid PULL followed by an unknown field 1000 */
    write_file("ok_unknown_field", "\x08\x01\x10\x08\xc2\x3e\x03xyz", 10);

    return failures ? 1 : 0;
}
