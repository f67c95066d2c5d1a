/* test_ps.c - the parameter server end to end, on loopback, with the real
 * mltunerd: 2 shards, 3 client processes pulling, pushing and clocking.
 *
 *  (a) the SSP invariant on every pull: table "count" has one slot per worker
 *      and each push adds exactly 1 to the pusher's slot (gradient -1, lr 1), so
 *      the value of slot v is the number of v's pushes the pull saw; a pull at
 *      clock c under staleness s must see at least c - s from every worker;
 *  (b) exact final parameters: plain SGD at lr 1 must leave initial - sum of
 *      every push; the gradients are small integers so the float sums are
 *      exact in any order;
 *  (c) fork: a write to the child leaves the parent unchanged; free gives the
 *      memory back.
 * Run at staleness 0 (BSP) and 2, each on its own branch; at 2 every worker
 * must also have been served by prefetched copies (mlt_pull_prefetched), which
 * (a) and (b) then check like any other pull, and (with mlt_client_keep_dst)
 * have skipped the copy of pulls the cache served with the very copy its
 * tables already held (mlt_pull_copies_skipped).
 *
 *  (d) averaging rules: under sf-sgd a TRAIN branch pulls y and a TEST or EVAL
 *      fork of it pulls the average x, each matching the formula of
 *      kernels/optim.h computed here, through the client (shared memory, or
 *      packed frames under MLT_SHM=0) and a raw frame-per-chunk pull. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "proto/wire.h"
#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"
#include "client/mltuner.h"

#define N_WORKERS 3
#define N_CLOCKS 40
#define W_SIZE 100003 /* several chunks of 16384 floats, the last one short */
#define B_SIZE 10

static const mlt_table_def_t tables[] = {
    {"w", W_SIZE},
    {"b", B_SIZE},
    {"count", N_WORKERS},
};
static const mlt_job_def_t job = {"test-ps", N_WORKERS, "sgd", tables, 3, false};

static mlt_test_cluster_t cl;

/* gradient value of worker w at clock c, element i of table t: an integer in [-4, 4] */
static float grad_at(int w, int64_t c, int t, uint64_t i)
{
    uint64_t x = ((uint64_t)w * 1000003u + (uint64_t)c) * 2654435761u + i * 40503u + (uint64_t)t;
    x ^= x >> 13;
    x *= 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return (float)((int)(x % 9) - 4);
}

static float init_at(int t, uint64_t i)
{
    return (float)((int)((i * 7 + (uint64_t)t) % 11) - 5);
}

static void make_grads(int w, int64_t c, float **g)
{
    for (int t = 0; t < 2; t++)
        for (uint64_t i = 0; i < tables[t].size; i++)
            g[t][i] = grad_at(w, c, t, i);
    for (int v = 0; v < N_WORKERS; v++)
        g[2][v] = v == w ? -1.0f : 0.0f;
}

static float **alloc_tables(void)
{
    float **p = calloc(3, sizeof *p);
    for (int t = 0; t < 3; t++)
        p[t] = calloc(tables[t].size, sizeof(float));
    return p;
}

static void free_tables(float **p)
{
    for (int t = 0; t < 3; t++)
        free(p[t]);
    free(p);
}

/* One worker process: returns the number of failures (exit status). */
static int run_worker(int w, uint32_t branch, uint32_t staleness)
{
    char err[512];
    mlt_client_t *c = mlt_client_new(cl.eps, (uint32_t)cl.n, (uint32_t)w, err, sizeof err);
    if (!c) {
        fprintf(stderr, "worker %d: %s\n", w, err);
        return 1;
    }
    int bad = 0;
    if (mlt_client_register(c, &job) < 0) {
        fprintf(stderr, "worker %d: register: %s\n", w, mlt_client_error(c));
        bad = 1;
        goto out;
    }
    /* workers only read what they pull: at staleness > 0 a pull the cache
     * serves with the copy p already holds copies nothing, and the checks
     * below still see every pull's data */
    mlt_client_keep_dst(c, staleness > 0);
    /* every shard is on this host: shared memory, unless MLT_SHM=0 says not */
    const char *env = getenv("MLT_SHM"), *tr = mlt_client_transport(c);
    char want[64];
    snprintf(want, sizeof want, "shared memory with %d of %d shards", cl.n, cl.n);
    if (!strstr(tr, env && strcmp(env, "0") == 0 ? "off (MLT_SHM=0)" : want)) {
        fprintf(stderr, "worker %d: transport is '%s' (MLT_SHM=%s)\n", w, tr, env ? env : "");
        bad = 1;
    }
    float **p = alloc_tables(), **g = alloc_tables();
    /* worker 1 uses the zero-copy calls (#15), checked like the others: table
     * "w" is cut across the two shards (its view is a copy, it has no push
     * buffer), "b" and "count" are whole on shard 1 */
    const bool zc = w == 1;
    const char *step_env = getenv("MLT_STEP"); /* MLT_STEP=0: no push buffers either */
    const bool shm = !(env && strcmp(env, "0") == 0) && !(step_env && strcmp(step_env, "0") == 0);
    const float *view[3];
    for (int64_t clock = 0; clock < N_CLOCKS && !bad; clock++) {
        if (zc && mlt_pull_view(c, branch, clock, view) == 0)
            for (int t = 0; t < 3; t++)
                memcpy(p[t], view[t], tables[t].size * sizeof(float));
        else if (zc || mlt_pull(c, branch, clock, p) < 0) {
            fprintf(stderr, "worker %d: pull %lld: %s\n", w, (long long)clock, mlt_client_error(c));
            bad++;
            break;
        }
        for (int v = 0; v < N_WORKERS; v++) {
            if (p[2][v] < (float)(clock - staleness)) {
                fprintf(stderr,
                        "worker %d: SSP violated at clock %lld, staleness %u: saw %g pushes "
                        "of worker %d\n",
                        w, (long long)clock, staleness, (double)p[2][v], v);
                bad++;
            }
        }
        if (mlt_pull_min_clock(c, branch) < clock - staleness) {
            fprintf(stderr, "worker %d: pull at %lld reflects min_clock %lld\n", w,
                    (long long)clock, (long long)mlt_pull_min_clock(c, branch));
            bad++;
        }
        make_grads(w, clock, g);
        for (uint32_t t = 0; t < 3; t++) {
            float *buf = zc ? mlt_push_buffer(c, branch, t) : NULL;
            if (zc && (buf != NULL) != (shm && t > 0)) {
                fprintf(stderr, "worker %d: push buffer of table %u: %p\n", w, t, (void *)buf);
                bad++;
            }
            if (buf)
                memcpy(buf, g[t], tables[t].size * sizeof(float));
            if (mlt_push(c, branch, t, buf ? buf : g[t]) < 0)
                bad++;
        }
        if (mlt_clock(c, branch, clock + 1) < 0) {
            fprintf(stderr, "worker %d: clock: %s\n", w, mlt_client_error(c));
            bad++;
        }
    }
    /* with staleness > 0, copies were asked for ahead of need and used */
    if (staleness > 0 && !bad && mlt_pull_prefetched(c) == 0) {
        fprintf(stderr, "worker %d: no pull at staleness %u was served by a prefetch\n", w,
                staleness);
        bad++;
    }
    if (staleness > 0 && !bad && !zc) {
        /* a pull the cache serves again skips its copy: a value written into
         * the tables stays; after mlt_client_forget_dst the pull copies */
        const int64_t last = N_CLOCKS - 1;
        p[0][0] = -12345.0f;
        if (mlt_pull(c, branch, last, p) < 0 || p[0][0] != -12345.0f) {
            fprintf(stderr, "worker %d: a cache-served pull with keep_dst copied\n", w);
            bad++;
        }
        mlt_client_forget_dst(c);
        if (mlt_pull(c, branch, last, p) < 0 || p[0][0] == -12345.0f) {
            fprintf(stderr, "worker %d: the pull after forget_dst did not copy\n", w);
            bad++;
        }
    }
    if (staleness > 0 && !bad && !zc && mlt_pull_copies_skipped(c) == 0) {
        fprintf(stderr, "worker %d: no pull at staleness %u skipped its copy\n", w, staleness);
        bad++;
    }
    if (staleness == 0 && mlt_pull_copies_skipped(c) != 0) {
        fprintf(stderr, "worker %d: a pull skipped its copy without keep_dst\n", w);
        bad++;
    }
    free_tables(p);
    free_tables(g);
out:
    mlt_client_destroy(&c);
    return bad;
}

static void setup(void)
{
    ck_assert_int_eq(mlt_test_start(&cl, 2, NULL), 0);
}

static void teardown(void)
{
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* Worker 0's client, the job `j` registered. */
static mlt_client_t *coordinator_of(const mlt_job_def_t *j)
{
    char err[512];
    mlt_client_t *c = mlt_client_new(cl.eps, (uint32_t)cl.n, 0, err, sizeof err);
    ck_assert_msg(c != NULL, "connect: %s", err);
    ck_assert_msg(mlt_client_register(c, j) == 0, "%s", mlt_client_error(c));
    return c;
}

static mlt_client_t *coordinator(void)
{
    return coordinator_of(&job);
}

static void run_ssp(uint32_t branch, uint32_t staleness)
{
    mlt_client_t *c = coordinator();
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = 1.0f;
    t.momentum = 0.0f;
    t.staleness = (int32_t)staleness;
    ck_assert_msg(mlt_branch_create(c, branch, MLT_BRANCH_TRAIN, &t) == 0, "%s",
                  mlt_client_error(c));
    float **init = alloc_tables();
    for (int tb = 0; tb < 3; tb++) {
        for (uint64_t i = 0; i < tables[tb].size; i++)
            init[tb][i] = tb == 2 ? 0.0f : init_at(tb, i);
        ck_assert_msg(mlt_write(c, branch, (uint32_t)tb, init[tb]) == 0, "%s",
                      mlt_client_error(c));
    }
    pid_t pids[N_WORKERS];
    for (int w = 0; w < N_WORKERS; w++) {
        pids[w] = fork();
        ck_assert_int_ge(pids[w], 0);
        if (pids[w] == 0)
            _exit(run_worker(w, branch, staleness));
    }
    for (int w = 0; w < N_WORKERS; w++) {
        int st;
        ck_assert_int_eq(waitpid(pids[w], &st, 0), pids[w]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d failed (status %d)", w,
                      st);
    }
    /* every worker finished N_CLOCKS: a pull at N_CLOCKS + staleness sees everything */
    float **fin = alloc_tables();
    ck_assert_msg(mlt_pull(c, branch, N_CLOCKS + staleness, fin) == 0, "%s", mlt_client_error(c));
    ck_assert_int_eq(mlt_pull_min_clock(c, branch), N_CLOCKS);
    for (int tb = 0; tb < 2; tb++) {
        for (uint64_t i = 0; i < tables[tb].size; i++) {
            float want = init[tb][i];
            for (int w = 0; w < N_WORKERS; w++)
                for (int64_t k = 0; k < N_CLOCKS; k++)
                    want -= grad_at(w, k, tb, i);
            if (fin[tb][i] != want)
                ck_abort_msg("table %d element %llu: %g, expected %g", tb, (unsigned long long)i,
                             (double)fin[tb][i], (double)want);
        }
    }
    for (int v = 0; v < N_WORKERS; v++)
        ck_assert_float_eq(fin[2][v], (float)N_CLOCKS);
    free_tables(init);
    free_tables(fin);
    mlt_client_destroy(&c);
}

START_TEST(test_bsp)
{
    run_ssp(1, 0);
}
END_TEST

START_TEST(test_ssp2)
{
    run_ssp(2, 2);
}
END_TEST

static uint64_t total_allocated(mlt_client_t *c)
{
    uint64_t sum = 0;
    for (uint32_t s = 0; s < (uint32_t)cl.n; s++) {
        mlt_server_status_t st;
        ck_assert_msg(mlt_client_status(c, s, &st) == 0, "%s", mlt_client_error(c));
        sum += st.memory_allocated;
        mlt_server_status_free(&st);
    }
    return sum;
}

START_TEST(test_fork)
{
    mlt_client_t *c = coordinator();
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = 1.0f;
    ck_assert_int_eq(mlt_branch_create(c, 10, MLT_BRANCH_TRAIN, NULL), 0);
    float **a = alloc_tables(), **b = alloc_tables();
    for (uint64_t i = 0; i < W_SIZE; i++)
        a[0][i] = (float)i;
    ck_assert_int_eq(mlt_write(c, 10, 0, a[0]), 0);
    uint64_t before = total_allocated(c);
    ck_assert_msg(mlt_branch_fork(c, 11, 10, MLT_BRANCH_TRAIN, &t) == 0, "%s",
                  mlt_client_error(c));
    ck_assert_msg(total_allocated(c) == before, "fork copied parameter bytes");
    /* write to the child: the parent is unchanged */
    for (uint64_t i = 0; i < W_SIZE; i++)
        b[0][i] = -1.0f;
    ck_assert_int_eq(mlt_write(c, 11, 0, b[0]), 0);
    ck_assert_uint_gt(total_allocated(c), before);
    ck_assert_int_eq(mlt_pull(c, 10, 0, b), 0);
    for (uint64_t i = 0; i < W_SIZE; i++)
        ck_assert_float_eq(b[0][i], (float)i);
    ck_assert_int_eq(mlt_pull(c, 11, 0, b), 0);
    ck_assert_float_eq(b[0][0], -1.0f);
    ck_assert_float_eq(b[0][W_SIZE - 1], -1.0f);
    /* the child's tunables: lr from the fork, the rest inherited */
    mlt_server_status_t st;
    ck_assert_int_eq(mlt_client_status(c, 0, &st), 0);
    int found = 0;
    for (uint32_t i = 0; i < st.n_branches; i++) {
        if (st.branches[i].id == 11) {
            found = 1;
            ck_assert_float_eq(st.branches[i].tunables.lr, 1.0f);
            ck_assert_int_eq(st.branches[i].parent, 10);
            ck_assert_uint_gt(st.branches[i].owned_bytes, 0);
        }
    }
    mlt_server_status_free(&st);
    ck_assert(found);
    /* a snapshot is frozen: a write or push is refused, its values stay */
    ck_assert_int_eq(mlt_branch_fork(c, 12, 10, MLT_BRANCH_SNAPSHOT, &t), 0);
    ck_assert_int_eq(mlt_write(c, 12, 0, b[0]), -EROFS);
    ck_assert_msg(strstr(mlt_client_error(c), "branch 12 is a snapshot"), "%s",
                  mlt_client_error(c));
    ck_assert_int_eq(mlt_push(c, 12, 0, b[0]), 0); /* does not wait: the error comes next */
    ck_assert_int_eq(mlt_sync(c), -EROFS);
    ck_assert_int_eq(mlt_pull(c, 12, 0, b), 0);
    for (uint64_t i = 0; i < W_SIZE; i++)
        ck_assert_float_eq(b[0][i], (float)i);
    ck_assert_int_eq(mlt_branch_free(c, 12), 0);
    /* free gives the memory back */
    ck_assert_int_eq(mlt_branch_free(c, 11), 0);
    ck_assert_uint_eq(total_allocated(c), before);
    ck_assert_int_eq(mlt_branch_free(c, 10), 0);
    ck_assert_uint_eq(total_allocated(c), 0);
    ck_assert_int_lt(mlt_branch_free(c, 10), 0);
    ck_assert_ptr_nonnull(strstr(mlt_client_error(c), "unknown branch 10"));
    free_tables(a);
    free_tables(b);
    mlt_client_destroy(&c);
}
END_TEST

/* A prefetch dropped while a shard still holds it parked: when the shard
 * answers it later, the data must not land in a cache slot that holds another
 * branch's copy by then (with shared memory the shard writes the slot's region
 * itself). Two clients of one 2-worker job in this process: worker 1 lags, so
 * worker 0's prefetch of branch 1 waits at the shards; a write to branch 1
 * drops it; branch 2 is then pulled into a new slot; worker 1's clock releases
 * the old prefetch; branch 2's cached copy must still hold branch 2. */
START_TEST(test_dropped_prefetch)
{
    static const mlt_job_def_t job2 = {"test-ps-2", 2, "sgd", tables, 3, false};
    char err[512];
    mlt_client_t *w[2];
    for (uint32_t k = 0; k < 2; k++) {
        w[k] = mlt_client_new(cl.eps, (uint32_t)cl.n, k, err, sizeof err);
        ck_assert_msg(w[k] != NULL, "connect: %s", err);
        ck_assert_msg(mlt_client_register(w[k], &job2) == 0, "%s", mlt_client_error(w[k]));
    }
    mlt_client_t *c = w[0];
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = 1.0f;
    t.momentum = 0.0f;
    t.staleness = 1;
    float **v = alloc_tables(), **got = alloc_tables();
    for (uint32_t b = 1; b <= 2; b++) {
        ck_assert_msg(mlt_branch_create(c, b, MLT_BRANCH_TRAIN, &t) == 0, "%s",
                      mlt_client_error(c));
        for (int tb = 0; tb < 3; tb++) {
            for (uint64_t i = 0; i < tables[tb].size; i++)
                v[tb][i] = (float)b;
            ck_assert_int_eq(mlt_write(c, b, (uint32_t)tb, v[tb]), 0);
        }
    }
    ck_assert_int_eq(mlt_pull(c, 1, 0, got), 0);
    ck_assert_int_eq(mlt_clock(c, 1, 1), 0);
    ck_assert_int_eq(mlt_pull(c, 1, 1, got), 0); /* from the cache; asks for clock 2 ahead */
    for (int tb = 0; tb < 3; tb++) { /* drops that prefetch, parked for worker 1 */
        for (uint64_t i = 0; i < tables[tb].size; i++)
            v[tb][i] = 3.0f;
        ck_assert_int_eq(mlt_write(c, 1, (uint32_t)tb, v[tb]), 0);
    }
    ck_assert_int_eq(mlt_pull(c, 2, 0, got), 0);
    ck_assert_float_eq(got[0][0], 2.0f);
    ck_assert_int_eq(mlt_clock(w[1], 1, 1), 0); /* the shards answer the old prefetch */
    mlt_server_status_t st;
    for (uint32_t s = 0; s < (uint32_t)cl.n; s++) { /* and worker 0 takes their replies */
        ck_assert_int_eq(mlt_client_status(c, s, &st), 0);
        mlt_server_status_free(&st);
    }
    for (int tb = 0; tb < 3; tb++)
        memset(got[tb], 0, tables[tb].size * sizeof(float));
    ck_assert_int_eq(mlt_pull(c, 2, 0, got), 0); /* served by the cache */
    for (int tb = 0; tb < 3; tb++)
        for (uint64_t i = 0; i < tables[tb].size; i++)
            if (got[tb][i] != 2.0f)
                ck_abort_msg("branch 2 table %d element %llu is %g in the cache, not 2 (%s)", tb,
                             (unsigned long long)i, (double)got[tb][i],
                             mlt_client_transport(c));
    free_tables(v);
    free_tables(got);
    mlt_client_destroy(&w[1]);
    mlt_client_destroy(&w[0]);
}
END_TEST

/* ---- (d) averaging rules ---------------------------------------------------- */

#define SF_LR    0.5
#define SF_BETA  0.9
#define SF_STEPS 5

/* y, z and x of one element after SF_STEPS sf-sgd updates from y0 with
 * gradients grad_at(0, k, t, i), straight from optim.h (wd 0, no warm-up:
 * every lr_k is SF_LR, so weight_sum after k+1 updates is (k+1)*lr^2 and
 * c = 1/(k+1)). */
static void sf_ref(int t, uint64_t i, double *y, double *x)
{
    double yy = init_at(t, i), z = yy, xx = yy;
    for (int k = 0; k < SF_STEPS; k++) {
        double c = 1.0 / (k + 1);
        z -= SF_LR * grad_at(0, k, t, i);
        xx = (1 - c) * xx + c * z;
        yy = (1 - SF_BETA) * z + SF_BETA * xx;
    }
    *y = yy;
    *x = xx;
}

/* got[0..n) of table t from element `from` on matches the reference y (want_x
 * false) or x; the values are O(10): a relative 1e-5 with a floor of 1e-5. */
static void expect_sf(const char *what, int t, uint64_t from, const float *got, uint64_t n,
                      bool want_x)
{
    for (uint64_t i = 0; i < n; i++) {
        double y, x;
        sf_ref(t, from + i, &y, &x);
        double want = want_x ? x : y;
        if (fabs((double)got[i] - want) > 1e-5 * fmax(1.0, fabs(want)))
            ck_abort_msg("%s: table %d element %llu is %.9g, want %s %.9g", what, t,
                         (unsigned long long)(from + i), (double)got[i], want_x ? "x" : "y", want);
    }
}

/* A raw pull of chunks [0, count) of table 0 of branch from shard 0, not
 * packed: the reply is a frame per chunk, the daemon's zero-copy path.
 * Returns the floats received into out (cap floats at most). */
static uint64_t raw_pull(uint32_t branch, uint32_t count, float *out, uint64_t cap)
{
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(sock, cl.eps[0]), 0);
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_PULL);
    h.has_request_id = h.has_worker = h.has_branch = h.has_clock = h.has_table = 1;
    h.has_chunk_first = h.has_chunk_count = 1;
    h.request_id = 77;
    h.branch = branch;
    h.chunk_count = count;
    ck_assert_int_eq(mlt_wire_send(sock, &h, 0), 0);
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    ck_assert_msg(zmq_poll(&it, 1, 5000) == 1, "no reply to a raw pull within 5 s");
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
    mlt_header_t *r = NULL;
    char err[256];
    ck_assert_msg(mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, err, sizeof err) == 0,
                  "%s", err);
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    ck_assert_msg(r->type == MLT__MSG_TYPE__MSG_PULL_REPLY && !(r->has_packed && r->packed),
                  "raw pull answered with %s: %s", mlt_wire_type_name(r->type),
                  r->error ? r->error : "");
    mlt_wire_free(&r);
    uint64_t n = 0, frames = 0;
    while (more) {
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
        more = zmq_msg_more(&m);
        size_t len = zmq_msg_size(&m) / sizeof(float);
        ck_assert_uint_le(n + len, cap);
        memcpy(out + n, zmq_msg_data(&m), len * sizeof(float));
        n += len;
        frames++;
        zmq_msg_close(&m);
    }
    ck_assert_uint_eq(frames, count);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return n;
}

START_TEST(test_average_pulls)
{
    char err[512];
    mlt_client_t *c = mlt_client_new(cl.eps, (uint32_t)cl.n, 0, err, sizeof err);
    ck_assert_msg(c != NULL, "connect: %s", err);
    /* update.average where the rule cannot keep one: refused by every shard */
    const mlt_job_def_t bad = {"test-ps-adam-avg", 1, "adam", tables, 3, true};
    ck_assert_int_eq(mlt_client_register(c, &bad), -EINVAL);
    ck_assert_msg(strstr(mlt_client_error(c), "adam cannot keep a weight average"), "%s",
                  mlt_client_error(c));
    const mlt_job_def_t sf = {"test-ps-sf", 1, "sf-sgd", tables, 3, false};
    ck_assert_msg(mlt_client_register(c, &sf) == 0, "%s", mlt_client_error(c));

    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = (float)SF_LR;
    t.momentum = (float)SF_BETA;
    t.warmup = 0;
    ck_assert_msg(mlt_branch_create(c, 20, MLT_BRANCH_TRAIN, &t) == 0, "%s", mlt_client_error(c));
    float **v = alloc_tables(), **p = alloc_tables();
    for (int tb = 0; tb < 3; tb++) {
        for (uint64_t i = 0; i < tables[tb].size; i++)
            v[tb][i] = init_at(tb, i);
        ck_assert_int_eq(mlt_write(c, 20, (uint32_t)tb, v[tb]), 0);
    }
    /* a test fork of the freshly written branch reads the written values */
    ck_assert_int_eq(mlt_branch_fork(c, 21, 20, MLT_BRANCH_TEST, NULL), 0);
    ck_assert_int_eq(mlt_pull(c, 21, 0, p), 0);
    for (int tb = 0; tb < 3; tb++)
        ck_assert(memcmp(p[tb], v[tb], tables[tb].size * sizeof(float)) == 0);
    ck_assert_int_eq(mlt_branch_free(c, 21), 0);

    for (int64_t k = 0; k < SF_STEPS; k++) {
        ck_assert_int_eq(mlt_pull(c, 20, k, p), 0);
        for (int tb = 0; tb < 3; tb++)
            for (uint64_t i = 0; i < tables[tb].size; i++)
                v[tb][i] = grad_at(0, k, tb, i); /* every table, "count" too */
        for (uint32_t tb = 0; tb < 3; tb++)
            ck_assert_int_eq(mlt_push(c, 20, tb, v[tb]), 0);
        ck_assert_msg(mlt_clock(c, 20, k + 1) == 0, "%s", mlt_client_error(c));
    }
    ck_assert_int_eq(mlt_sync(c), 0);
    ck_assert_int_eq(mlt_branch_fork(c, 21, 20, MLT_BRANCH_TEST, NULL), 0);
    ck_assert_int_eq(mlt_branch_fork(c, 22, 20, MLT_BRANCH_EVAL, NULL), 0);
    const char *how = mlt_client_transport(c);
    ck_assert_int_eq(mlt_pull(c, 20, SF_STEPS, p), 0);
    for (int tb = 0; tb < 3; tb++)
        expect_sf("train pull", tb, 0, p[tb], tables[tb].size, false);
    /* y and x really differ: a test reading y would fail the next check */
    double y, x;
    sf_ref(0, 0, &y, &x);
    ck_assert_msg(fabs(y - x) > 0.1, "y %g and x %g too close to tell apart", y, x);
    for (uint32_t b = 21; b <= 22; b++) {
        ck_assert_msg(mlt_pull(c, b, 0, p) == 0, "%s", mlt_client_error(c));
        for (int tb = 0; tb < 3; tb++)
            expect_sf(b == 21 ? "test pull" : "eval pull", tb, 0, p[tb], tables[tb].size, true);
    }
    /* the frame-per-chunk reply of a test branch carries x as well */
    mlt_server_status_t st;
    ck_assert_int_eq(mlt_client_status(c, 0, &st), 0);
    const uint32_t cf = st.chunk_floats;
    mlt_server_status_free(&st);
    ck_assert_uint_gt(W_SIZE, 2 * cf);
    uint64_t n = raw_pull(21, 2, p[0], W_SIZE);
    ck_assert_uint_eq(n, 2 * (uint64_t)cf);
    expect_sf("raw test pull", 0, 0, p[0], n, true);
    n = raw_pull(20, 2, p[0], W_SIZE);
    expect_sf("raw train pull", 0, 0, p[0], n, false);
    fprintf(stderr, "test_average_pulls: client pulls by %s\n", how);
    free_tables(v);
    free_tables(p);
    mlt_client_destroy(&c);
}
END_TEST

/* #15: with shared memory a clock's pushes travel with the clock (one STEP
 * per shard); made otherwise they still arrive in order, and a bad table in a
 * step is refused alone. */
START_TEST(test_step)
{
    static const mlt_job_def_t one = {"test-ps-step", 1, "sgd", tables, 3, false}; /* one worker */
    mlt_client_t *c = coordinator();
    ck_assert_int_eq(mlt_client_job_end(c), 0);
    ck_assert_msg(mlt_client_register(c, &one) == 0, "%s", mlt_client_error(c));
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = 1.0f;
    t.staleness = 0;
    ck_assert_int_eq(mlt_branch_create(c, 30, MLT_BRANCH_TRAIN, &t), 0);
    float **g = alloc_tables(), **p = alloc_tables();
    for (int tb = 0; tb < 3; tb++)
        ck_assert_int_eq(mlt_write(c, 30, (uint32_t)tb, g[tb]), 0); /* zeros */
    for (uint64_t i = 0; i < W_SIZE; i++)
        g[0][i] = 1.0f;
    for (uint64_t i = 0; i < B_SIZE; i++)
        g[1][i] = 2.0f;
    /* table w twice before the clock (the first push goes out on its own),
     * then a pull before the clock: it sees all three */
    ck_assert_int_eq(mlt_push(c, 30, 0, g[0]), 0);
    ck_assert_int_eq(mlt_push(c, 30, 1, g[1]), 0);
    ck_assert_int_eq(mlt_push(c, 30, 0, g[0]), 0);
    ck_assert_msg(mlt_pull(c, 30, 0, p) == 0, "%s", mlt_client_error(c));
    for (uint64_t i = 0; i < W_SIZE; i += 997)
        ck_assert_float_eq_tol(p[0][i], -2.0f, 1e-6f);
    ck_assert_float_eq_tol(p[1][B_SIZE - 1], -2.0f, 1e-6f);
    ck_assert_int_eq(mlt_clock(c, 30, 1), 0);
    /* a NaN in table b: the clock reports it, table w is applied all the
     * same, b is not, and the clock counted */
    g[1][3] = NAN;
    ck_assert_int_eq(mlt_push(c, 30, 0, g[0]), 0);
    ck_assert_int_eq(mlt_push(c, 30, 1, g[1]), 0);
    ck_assert_int_eq(mlt_clock(c, 30, 2), -EDOM);
    ck_assert_msg(strstr(mlt_client_error(c), "non-finite"), "%s", mlt_client_error(c));
    ck_assert_msg(mlt_pull(c, 30, 2, p) == 0, "%s", mlt_client_error(c));
    ck_assert_int_eq(mlt_pull_min_clock(c, 30), 2);
    ck_assert_float_eq_tol(p[0][W_SIZE - 1], -3.0f, 1e-6f);
    ck_assert_float_eq_tol(p[1][0], -2.0f, 1e-6f);
    /* pushes made and never clocked are delivered when the client goes */
    g[1][3] = 2.0f;
    ck_assert_int_eq(mlt_push(c, 30, 1, g[1]), 0);
    mlt_client_destroy(&c);
    c = coordinator_of(&one);
    ck_assert_msg(mlt_pull(c, 30, 2, p) == 0, "%s", mlt_client_error(c));
    ck_assert_float_eq_tol(p[1][3], -4.0f, 1e-6f);
    free_tables(g);
    free_tables(p);
    mlt_client_destroy(&c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ps");
    TCase *tc = tcase_create("ssp");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bsp);
    tcase_add_test(tc, test_ssp2);
    suite_add_tcase(s, tc);
    tc = tcase_create("fork");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fork);
    tcase_add_test(tc, test_dropped_prefetch);
    tcase_add_test(tc, test_step);
    suite_add_tcase(s, tc);
    tc = tcase_create("average");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_average_pulls);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return mlt_test_run_suite(suite());
}
