/* check_wire_limits.c - the wire's limits on header fields, tunables, job
 * specs and server info: each bounded field just inside and just outside its
 * range, every rejection naming the field. Part of check_wire (see
 * check_wire.c). */
#include "tests/unit/check_wire.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* #15: a STEP's table list (count, range, order) and a pull's offset */
START_TEST(test_step_fields)
{
    mlt_header_t h = base();
    uint32_t ok[3] = {0, 5, MLT_MAX_TABLES - 1}, dup[2] = {2, 2}, down[2] = {3, 1},
             big[1] = {MLT_MAX_TABLES};
    h.n_tables = 3, h.tables = ok;
    ACCEPT(&h);
    h.n_tables = 2, h.tables = dup;
    REJECT(&h, -EINVAL, "strictly increasing");
    h.tables = down;
    REJECT(&h, -EINVAL, "tables[1]");
    h.n_tables = 1, h.tables = big;
    REJECT(&h, -EINVAL, "tables[0]");
    uint32_t *many = calloc(MLT_MAX_TABLES + 1, sizeof *many);
    for (uint32_t i = 0; i <= MLT_MAX_TABLES; i++)
        many[i] = i;
    h.n_tables = MLT_MAX_TABLES + 1, h.tables = many;
    REJECT(&h, -EINVAL, "tables lists");
    free(many);
    h = base();
    h.has_pull_offset = 1, h.pull_offset = MLT_MAX_SHM_BYTES;
    ACCEPT(&h);
    h.pull_offset = MLT_MAX_SHM_BYTES + 1;
    REJECT(&h, -EINVAL, "pull_offset");
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

void wire_limits_tcases(Suite *s)
{
    TCase *tc;
    tc = tcase_create("fields");
    tcase_add_test(tc, test_step_fields);
    tcase_add_test(tc, test_worker);
    tcase_add_test(tc, test_branch);
    tcase_add_test(tc, test_parent);
    tcase_add_test(tc, test_clock);
    tcase_add_test(tc, test_trace_stamps);
    tcase_add_test(tc, test_table);
    tcase_add_test(tc, test_chunk_count);
    tcase_add_test(tc, test_kind);
    tcase_add_test(tc, test_error_text);
    tcase_add_test(tc, test_n_branches);
    suite_add_tcase(s, tc);
    tc = tcase_create("tunables");
    tcase_add_test(tc, test_tunables_lr);
    tcase_add_test(tc, test_tunables_momentum);
    tcase_add_test(tc, test_tunables_weight_decay);
    tcase_add_test(tc, test_tunables_betas_eps);
    tcase_add_test(tc, test_tunables_staleness_warmup);
    suite_add_tcase(s, tc);
    tc = tcase_create("job");
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
    suite_add_tcase(s, tc);
    tc = tcase_create("server");
    tcase_add_test(tc, test_server_info);
    suite_add_tcase(s, tc);
}
