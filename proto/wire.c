/* wire.c - see wire.h. */
#include "proto/wire.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/errtext.h"

void mlt_wire_init(mlt_header_t *h, Mlt__MsgType type)
{
    mlt__header__init(h);
    h->version = MLT_PROTO_VERSION;
    h->type = type;
}

void mlt_wire_init_error(mlt_header_t *h, uint64_t request_id, int code, char *text)
{
    mlt_wire_init(h, MLT__MSG_TYPE__MSG_ERROR);
    h->has_request_id = h->has_error_code = 1;
    h->request_id = request_id;
    h->error_code = -code;
    h->error = text;
}

const char *mlt_wire_type_name(int type)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&mlt__msg_type__descriptor, type);
    return v ? v->name + 4 /* skip "MSG_" */ : "?";
}

static int check_name(const char *what, const char *s, char *err, size_t errlen)
{
    size_t n = s ? strnlen(s, MLT_MAX_NAME_LEN + 1) : 0;
    if (n == 0)
        return mlt_errf(-EINVAL, err, errlen, "%s is empty", what);
    if (n > MLT_MAX_NAME_LEN)
        return mlt_errf(-EINVAL, err, errlen, "%s is longer than %u bytes", what, MLT_MAX_NAME_LEN);
    /* names end up in log lines and error texts: printable, no quotes */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x21 || ch > 0x7e || ch == '\'' || ch == '"' || ch == '\\')
            return mlt_errf(-EINVAL, err, errlen,
                            "%s has a byte 0x%02x at %zu (allowed: printable ASCII, no quotes, "
                            "spaces or backslashes)",
                            what, ch, i);
    }
    return 0;
}

int mlt_wire_check_tunables(const Mlt__Tunables *t, char *err, size_t errlen)
{
    struct {
        const char *name;
        int has;
        float v, lo, hi;
    } f[] = {
        {"lr", t->has_lr, t->lr, 0.0f, 1e6f},
        {"momentum", t->has_momentum, t->momentum, 0.0f, 1.0f},
        {"weight_decay", t->has_weight_decay, t->weight_decay, 0.0f, 1e3f},
        {"beta1", t->has_beta1, t->beta1, 0.0f, 1.0f},
        {"beta2", t->has_beta2, t->beta2, 0.0f, 1.0f},
        {"eps", t->has_eps, t->eps, 0.0f, 1.0f},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].has && !(isfinite(f[i].v) && f[i].v >= f[i].lo && f[i].v <= f[i].hi))
            return mlt_errf(-EINVAL, err, errlen, "tunables.%s = %g is outside [%g, %g]", f[i].name,
                            (double)f[i].v, (double)f[i].lo, (double)f[i].hi);
    }
    if (t->has_staleness && t->staleness > MLT_MAX_STALENESS)
        return mlt_errf(-EINVAL, err, errlen, "tunables.staleness = %u exceeds limit %u",
                        t->staleness, MLT_MAX_STALENESS);
    if (t->has_warmup && t->warmup > MLT_MAX_WARMUP)
        return mlt_errf(-EINVAL, err, errlen, "tunables.warmup = %u exceeds limit %u", t->warmup,
                        MLT_MAX_WARMUP);
    return 0;
}

int mlt_wire_check_job(const Mlt__JobSpec *job, char *err, size_t errlen)
{
    int rc = check_name("job.name", job->name, err, errlen);
    if (rc)
        return rc;
    if (job->n_workers < 1 || job->n_workers > MLT_MAX_WORKERS)
        return mlt_errf(-EINVAL, err, errlen, "job.n_workers = %u is outside [1, %u]",
                        job->n_workers, MLT_MAX_WORKERS);
    if (!protobuf_c_enum_descriptor_get_value(&mlt__rule__descriptor, job->rule))
        return mlt_errf(-EINVAL, err, errlen, "job.rule = %d is not a known update rule",
                        (int)job->rule);
    if (job->n_tables < 1 || job->n_tables > MLT_MAX_TABLES)
        return mlt_errf(-EINVAL, err, errlen, "job has %zu tables, allowed 1..%u", job->n_tables,
                        MLT_MAX_TABLES);
    for (size_t i = 0; i < job->n_tables; i++) {
        const Mlt__TableSpec *t = job->tables[i];
        char what[48];
        snprintf(what, sizeof what, "job.tables[%zu].name", i);
        if ((rc = check_name(what, t->name, err, errlen)))
            return rc;
        if (t->size < 1 || t->size > MLT_MAX_TABLE_FLOATS)
            return mlt_errf(-EINVAL, err, errlen, "table '%s' size %llu is outside [1, %llu]",
                            t->name, (unsigned long long)t->size,
                            (unsigned long long)MLT_MAX_TABLE_FLOATS);
        if (t->n_shape > MLT_MAX_SHAPE_DIMS)
            return mlt_errf(-EINVAL, err, errlen, "table '%s' shape has %zu dimensions, limit %u",
                            t->name, t->n_shape, MLT_MAX_SHAPE_DIMS);
        if (t->n_shape) {
            unsigned long long prod = 1;
            for (size_t d = 0; d < t->n_shape; d++) {
                /* checked before multiplying: the product must not wrap */
                if (t->shape[d] && prod > MLT_MAX_TABLE_FLOATS / t->shape[d]) {
                    prod = MLT_MAX_TABLE_FLOATS + 1;
                    break;
                }
                prod *= t->shape[d];
            }
            if (prod != t->size)
                return mlt_errf(
                    -EINVAL, err, errlen, "table '%s' shape product %s%llu != size %llu", t->name,
                    prod > MLT_MAX_TABLE_FLOATS ? "> " : "",
                    prod > MLT_MAX_TABLE_FLOATS ? (unsigned long long)MLT_MAX_TABLE_FLOATS : prod,
                    (unsigned long long)t->size);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(job->tables[j]->name, t->name) == 0)
                return mlt_errf(-EINVAL, err, errlen, "table name '%s' appears twice", t->name);
    }
    return 0;
}

/* Length-bounded string check for an optional field (NULL is fine). */
static int check_str(const char *what, const char *v, size_t max, char *err, size_t errlen)
{
    if (v && strnlen(v, (size_t)max + 1) > max)
        return mlt_errf(-EINVAL, err, errlen, "%s is longer than %zu bytes", what, max);
    return 0;
}

static int check_task(const Mlt__Task *t, char *err, size_t errlen)
{
    int rc;
    if (!protobuf_c_enum_descriptor_get_value(&mlt__task_kind__descriptor, t->kind))
        return mlt_errf(-EINVAL, err, errlen, "task.kind %d is unknown", (int)t->kind);
    if (t->has_branch && t->branch > MLT_MAX_BRANCH_ID)
        return mlt_errf(-EINVAL, err, errlen, "task.branch %u exceeds limit %u", t->branch,
                        MLT_MAX_BRANCH_ID);
    if ((t->has_clock_start && (t->clock_start < 0 || t->clock_start > MLT_MAX_CLOCK)) ||
        (t->has_clocks && (t->clocks < 0 || t->clocks > MLT_MAX_CLOCK)))
        return mlt_errf(-EINVAL, err, errlen, "task.clock_start/clocks outside [0, %lld]",
                        (long long)MLT_MAX_CLOCK);
    if (t->has_batch_size && (t->batch_size < 1 || t->batch_size > MLT_MAX_BATCH))
        return mlt_errf(-EINVAL, err, errlen, "task.batch_size %u is outside [1, %u]",
                        t->batch_size, MLT_MAX_BATCH);
    if (t->has_n_workers && (t->n_workers < 1 || t->n_workers > MLT_MAX_WORKERS))
        return mlt_errf(-EINVAL, err, errlen, "task.n_workers %u is outside [1, %u]", t->n_workers,
                        MLT_MAX_WORKERS);
    if (t->has_data_epoch && !(t->data_epoch >= 0 && t->data_epoch < 1e9))
        return mlt_errf(-EINVAL, err, errlen, "task.data_epoch %g is out of range", t->data_epoch);
    if (t->has_share != t->has_share_count ||
        (t->has_share_count &&
         (t->share_count < 1 || t->share_count > MLT_MAX_WORKERS || t->share >= t->share_count)))
        return mlt_errf(-EINVAL, err, errlen,
                        "task.share %u of task.share_count %u: both or neither, share < "
                        "share_count <= %u",
                        t->share, t->share_count, MLT_MAX_WORKERS);
    if (t->n_servers > MLT_MAX_SERVERS)
        return mlt_errf(-EINVAL, err, errlen, "task.servers lists %zu, limit %u", t->n_servers,
                        MLT_MAX_SERVERS);
    for (size_t i = 0; i < t->n_servers; i++)
        if ((rc = check_str("task.servers[]", t->servers[i], MLT_MAX_ENDPOINT_LEN, err, errlen)))
            return rc;
    if ((rc = check_str("task.job_text", t->job_text, MLT_MAX_JOB_TEXT, err, errlen)) ||
        (rc = check_str("task.reason", t->reason, MLT_MAX_ERROR_LEN, err, errlen)))
        return rc;
    return 0;
}

static int check_report(const Mlt__Report *r, char *err, size_t errlen)
{
    if (!protobuf_c_enum_descriptor_get_value(&mlt__task_kind__descriptor, r->kind))
        return mlt_errf(-EINVAL, err, errlen, "report.kind %d is unknown", (int)r->kind);
    if (r->has_branch && r->branch > MLT_MAX_BRANCH_ID)
        return mlt_errf(-EINVAL, err, errlen, "report.branch %u exceeds limit %u", r->branch,
                        MLT_MAX_BRANCH_ID);
    if (r->has_clock && (r->clock < 0 || r->clock > MLT_MAX_CLOCK))
        return mlt_errf(-EINVAL, err, errlen, "report.clock %lld is outside [0, %lld]",
                        (long long)r->clock, (long long)MLT_MAX_CLOCK);
    /* loss may be NaN (a diverging branch); counts only have to be consistent */
    if ((r->has_correct && r->correct > r->count) ||
        (r->has_test_correct && r->test_correct > r->test_count))
        return mlt_errf(-EINVAL, err, errlen, "report.correct exceeds report.count");
    if (r->has_epoch && !(r->epoch >= 0 && r->epoch < 1e9))
        return mlt_errf(-EINVAL, err, errlen, "report.epoch %g is out of range", r->epoch);
    if (r->has_train_total && r->train_total > UINT32_MAX)
        return mlt_errf(-EINVAL, err, errlen, "report.train_total %llu exceeds %u",
                        (unsigned long long)r->train_total, UINT32_MAX);
    return check_str("report.error", r->error, MLT_MAX_ERROR_LEN, err, errlen);
}

/* A JOIN's program: a name (1..64 of A-Z a-z 0-9 . _ -); backends: a list of
 * known backend names. */
static int check_join(const Mlt__JoinInfo *j, char *err, size_t errlen)
{
    if (j->program) {
        size_t n = strnlen(j->program, MLT_MAX_PROGRAM_LEN + 1);
        if (n < 1 || n > MLT_MAX_PROGRAM_LEN ||
            strspn(j->program, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n)
            return mlt_errf(-EINVAL, err, errlen,
                            "join.program must be 1..%u of A-Z a-z 0-9 . _ -", MLT_MAX_PROGRAM_LEN);
    }
    if (j->backends && strcmp(j->backends, "cpu") != 0 && strcmp(j->backends, "cuda") != 0 &&
        strcmp(j->backends, "cpu,cuda") != 0)
        return mlt_errf(-EINVAL, err, errlen, "join.backends must be cpu, cuda or cpu,cuda");
    if (j->has_threads && (j->threads < 1 || j->threads > MLT_MAX_THREADS))
        return mlt_errf(-EINVAL, err, errlen, "join.threads %u is outside [1, %u]", j->threads,
                        MLT_MAX_THREADS);
    return 0;
}

static int check_header(const mlt_header_t *h, char *err, size_t errlen)
{
    if (h->has_worker && h->worker >= MLT_MAX_WORKERS)
        return mlt_errf(-EINVAL, err, errlen, "worker %u exceeds limit %u", h->worker,
                        MLT_MAX_WORKERS - 1);
    if (h->has_branch && h->branch > MLT_MAX_BRANCH_ID)
        return mlt_errf(-EINVAL, err, errlen, "branch id %u exceeds limit %u", h->branch,
                        MLT_MAX_BRANCH_ID);
    if (h->has_parent && h->parent > MLT_MAX_BRANCH_ID)
        return mlt_errf(-EINVAL, err, errlen, "parent id %u exceeds limit %u", h->parent,
                        MLT_MAX_BRANCH_ID);
    if (h->has_clock && (h->clock < 0 || h->clock > MLT_MAX_CLOCK))
        return mlt_errf(-EINVAL, err, errlen, "clock %lld is outside [0, %lld]",
                        (long long)h->clock, (long long)MLT_MAX_CLOCK);
    if (h->has_table && h->table >= MLT_MAX_TABLES)
        return mlt_errf(-EINVAL, err, errlen, "table %u exceeds limit %u", h->table,
                        MLT_MAX_TABLES - 1);
    if (h->has_chunk_count && (h->chunk_count < 1 || h->chunk_count >= MLT_MAX_FRAMES))
        return mlt_errf(-EINVAL, err, errlen, "chunk_count %u is outside [1, %u]", h->chunk_count,
                        MLT_MAX_FRAMES - 1);
    if (h->has_kind && !protobuf_c_enum_descriptor_get_value(&mlt__branch_kind__descriptor, h->kind))
        return mlt_errf(-EINVAL, err, errlen, "branch kind %d is unknown", (int)h->kind);
    if (h->error && strnlen(h->error, MLT_MAX_ERROR_LEN + 1) > MLT_MAX_ERROR_LEN)
        return mlt_errf(-EINVAL, err, errlen, "error text longer than %u bytes", MLT_MAX_ERROR_LEN);
    if (h->n_branches > MLT_MAX_BRANCHES)
        return mlt_errf(-EINVAL, err, errlen, "%zu branches listed, limit %u", h->n_branches,
                        MLT_MAX_BRANCHES);
    if (h->has_min_clock && (h->min_clock < 0 || h->min_clock > MLT_MAX_CLOCK))
        return mlt_errf(-EINVAL, err, errlen, "min_clock %lld is outside [0, %lld]",
                        (long long)h->min_clock, (long long)MLT_MAX_CLOCK);
    int rc;
    for (size_t i = 0; i < h->n_branches; i++) {
        const Mlt__BranchInfo *b = h->branches[i];
        if (b->id > MLT_MAX_BRANCH_ID || (b->has_parent && b->parent > MLT_MAX_BRANCH_ID) ||
            !protobuf_c_enum_descriptor_get_value(&mlt__branch_kind__descriptor, b->kind) ||
            b->min_clock < 0 || b->min_clock > MLT_MAX_CLOCK)
            return mlt_errf(-EINVAL, err, errlen,
                            "branches[%zu] out of range (id %u, kind %d, min_clock %lld)", i, b->id,
                            (int)b->kind, (long long)b->min_clock);
        if (b->tunables && (rc = mlt_wire_check_tunables(b->tunables, err, errlen)))
            return rc;
    }
    if (h->tunables && (rc = mlt_wire_check_tunables(h->tunables, err, errlen)))
        return rc;
    if (h->job && (rc = mlt_wire_check_job(h->job, err, errlen)))
        return rc;
    if (h->task && (rc = check_task(h->task, err, errlen)))
        return rc;
    if (h->report && (rc = check_report(h->report, err, errlen)))
        return rc;
    if (h->join && (rc = check_join(h->join, err, errlen)))
        return rc;
    if (h->n_tables > MLT_MAX_TABLES)
        return mlt_errf(-EINVAL, err, errlen, "tables lists %zu, limit %u", h->n_tables,
                        MLT_MAX_TABLES);
    for (size_t i = 0; i < h->n_tables; i++)
        if (h->tables[i] >= MLT_MAX_TABLES || (i > 0 && h->tables[i] <= h->tables[i - 1]))
            return mlt_errf(-EINVAL, err, errlen,
                            "tables[%zu] = %u: tables must be strictly increasing, below %u", i,
                            h->tables[i], MLT_MAX_TABLES);
    if (h->n_trace_ns > MLT_TRACE_STAMPS)
        return mlt_errf(-EINVAL, err, errlen, "trace_ns lists %zu stamps, limit %u", h->n_trace_ns,
                        MLT_TRACE_STAMPS);
    if (h->n_overrides > MLT_MAX_OVERRIDES)
        return mlt_errf(-EINVAL, err, errlen, "overrides lists %zu, limit %u", h->n_overrides,
                        MLT_MAX_OVERRIDES);
    for (size_t i = 0; i < h->n_overrides; i++)
        if ((rc = check_str("overrides[]", h->overrides[i], MLT_MAX_OVERRIDE_LEN, err, errlen)))
            return rc;
    if ((rc = check_str("job_text", h->job_text, MLT_MAX_JOB_TEXT, err, errlen)) ||
        (rc = check_str("job_path", h->job_path, MLT_MAX_PATH_LEN, err, errlen)) ||
        (rc = check_str("out_dir", h->out_dir, MLT_MAX_PATH_LEN, err, errlen)) ||
        (rc = check_str("text", h->text, MLT_MAX_METRICS_TEXT, err, errlen)) ||
        (rc = check_str("shm_name", h->shm_name, MLT_MAX_SHM_NAME_LEN, err, errlen)) ||
        (rc = check_str("local_control", h->local_control, MLT_MAX_ENDPOINT_LEN, err, errlen)) ||
        (rc = check_str("ckpt_job", h->ckpt_job, MLT_MAX_NAME_LEN, err, errlen)))
        return rc;
    if (h->has_shm_bytes && h->shm_bytes > MLT_MAX_SHM_BYTES)
        return mlt_errf(-EINVAL, err, errlen, "shm_bytes %llu exceeds limit %llu",
                        (unsigned long long)h->shm_bytes, (unsigned long long)MLT_MAX_SHM_BYTES);
    if (h->has_pull_offset && h->pull_offset > MLT_MAX_SHM_BYTES)
        return mlt_errf(-EINVAL, err, errlen, "pull_offset %llu exceeds limit %llu",
                        (unsigned long long)h->pull_offset, (unsigned long long)MLT_MAX_SHM_BYTES);
    if (h->has_shm_offset && h->shm_offset > MLT_MAX_SHM_BYTES)
        return mlt_errf(-EINVAL, err, errlen, "shm_offset %llu exceeds limit %llu",
                        (unsigned long long)h->shm_offset, (unsigned long long)MLT_MAX_SHM_BYTES);
    if (h->server && (h->server->n_servers < 1 || h->server->n_servers > MLT_MAX_SERVERS ||
                      h->server->rank >= h->server->n_servers || h->server->chunk_floats < 1 ||
                      h->server->chunk_floats > MLT_MAX_CHUNK_BYTES / 4))
        return mlt_errf(-EINVAL, err, errlen,
                        "server info out of range (rank %u, n_servers %u, chunk_floats %u)",
                        h->server->rank, h->server->n_servers, h->server->chunk_floats);
    if (h->server && (rc = check_str("server.job", h->server->job, MLT_MAX_NAME_LEN, err, errlen)))
        return rc;
    return 0;
}

int mlt_wire_decode(const void *buf, size_t len, mlt_header_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len > MLT_MAX_HEADER_BYTES)
        return mlt_errf(-EMSGSIZE, err, errlen, "header frame is %zu bytes, limit %u", len,
                        MLT_MAX_HEADER_BYTES);
    if (len == 0)
        return mlt_errf(-EPROTO, err, errlen, "empty header frame");
    mlt_header_t *h = mlt__header__unpack(NULL, len, buf);
    if (!h)
        return mlt_errf(-EPROTO, err, errlen,
                        "header frame (%zu bytes) is not a valid mltuner header", len);
    int rc;
    if (h->version != MLT_PROTO_VERSION) {
        rc = mlt_errf(-EPROTONOSUPPORT, err, errlen,
                      "protocol version %u not supported (this peer speaks %u)", h->version,
                      MLT_PROTO_VERSION);
        goto fail_h;
    }
    if (h->type == MLT__MSG_TYPE__MSG_NONE ||
        !protobuf_c_enum_descriptor_get_value(&mlt__msg_type__descriptor, h->type)) {
        rc = mlt_errf(-EBADMSG, err, errlen, "unknown message type %d", (int)h->type);
        goto fail_h;
    }
    if ((rc = check_header(h, err, errlen)))
        goto fail_h;
    *out = h;
    return 0;
fail_h:
    mlt__header__free_unpacked(h, NULL);
    return rc;
}

void mlt_wire_free(mlt_header_t **hp)
{
    if (hp && *hp) {
        mlt__header__free_unpacked(*hp, NULL);
        *hp = NULL;
    }
}

size_t mlt_wire_encode(const mlt_header_t *h, uint8_t **buf)
{
    size_t n = mlt__header__get_packed_size(h);
    *buf = mlt_try_malloc(n);
    if (!*buf)
        return 0;
    return mlt__header__pack(h, *buf);
}

static void free_buf(void *data, void *hint)
{
    (void)hint;
    mlt_free(data);
}

int mlt_wire_send(void *sock, const mlt_header_t *h, int flags)
{
    uint8_t stackbuf[512];
    size_t n = mlt__header__get_packed_size(h);
    if (n <= sizeof stackbuf) {
        mlt__header__pack(h, stackbuf);
        return zmq_send(sock, stackbuf, n, flags) < 0 ? -zmq_errno() : 0;
    }
    uint8_t *buf = mlt_try_malloc(n);
    if (!buf)
        return -ENOMEM;
    mlt__header__pack(h, buf);
    zmq_msg_t m;
    zmq_msg_init_data(&m, buf, n, free_buf, NULL);
    if (zmq_msg_send(&m, sock, flags) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&m);
        return -e;
    }
    return 0;
}
