/* ps.c - parameter-server data path and fork cost, against raw ZeroMQ.
 *
 * Three measurements in one run:
 *  1. ours: pull + push + clock of one table of 1, 16 and 64 MiB through a
 *     real mltunerd on loopback (one daemon, this process is the only worker,
 *     plain SGD, staleness 0), the data through shared memory (the client is
 *     on the daemon's host; MLT_SHM=0 keeps it on the socket). Every pull must reach the daemon: the pull at
 *     clock c must come back with min_clock c (a cache hit would still say
 *     c - 1), and its first and last values must show every earlier push.
 *  2. peer: the same bytes between two processes over tcp loopback with plain
 *     ZeroMQ, zero-copy both ways (DEALER here, ROUTER in a forked child that
 *     echoes the frame layout it got from a preallocated buffer). Measured with
 *     64 KiB frames (the daemon's chunk layout) and as one frame; the faster is
 *     the peer.
 *  3. fork: mlt_store_fork() in-process on models of 1 MiB .. 1 GiB: median
 *     time of 5 forks, and the memory one fork adds (resident-set growth over
 *     5 live forks, and the store's chunk bytes, which must not move).
 *  4. where a clock's time goes (#15, ps_clock.c): a 1 MiB model (one table,
 *     and fmnist-mlp's six) at staleness 0 and 2, every request traced
 *     (Header.trace: the shard stamps when it began, decoded, read or parked,
 *     checked or released, applied or wrote, replied; the client when it
 *     sent, got and handled the reply; one CLOCK_MONOTONIC on one host),
 *     medians per request kind, next to the copy
 *     bound: a memcpy of the pull's and the push's bytes (1 MiB each, buffers
 *     of the same sizes), measured in every round of 1. The last line's
 *     clock_1mib_us is the median iteration of 1's 1 MiB rows (untraced) and
 *     clock_vs_copy its ratio to the bound of the same round (median of
 *     rounds); clock_1mib_view_us and clock_view_vs_copy the same with the
 *     zero-copy calls (mlt_pull_view, mlt_push_buffer), run in every round.
 * Each throughput row runs >= 1 s and >= 5 iterations after 2 warm-up ones,
 * in 5 rounds that interleave the contenders; the median round is reported.
 * The ratio is the median of the rounds' own ratios (ours over the peer of
 * the same round, which ran seconds apart under the same load elsewhere on
 * the machine), not the ratio of two medians taken from different rounds.
 * MB/s is 1e6 bytes per second of (pull bytes + push bytes). The last line is
 * the summary a script reads. Any failed call prints why and exits 1.
 *
 * `ps ours MIB SECONDS` runs only the daemon path at one size, for a profiler;
 * `ps clock SECONDS ROUNDS` only 4 (and an untraced 1 MiB row per round);
 * `MLT_BASE_ROOT=<older build> ps ab SECONDS ROUNDS` the untraced 1 MiB
 * staleness-0 iteration against an older build's mltunerd in the same run,
 * rounds interleaving: that daemon and this one, each with this client's
 * pull-at-clock prefetch off and on (the A/B of a change, under one load). */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "common/timeutil.h"
#include "tests/integration/harness.h"
#include "bench/ps.h"
#include "client/client_int.h" /* the trace records (bench only: the static library) */
#include "client/mltuner.h"
#include "daemon/store.h"

#define FORK_CHUNK_FLOATS 16384u
#define FORK_REPS         5

static const uint64_t tput_sizes[] = {1 * MIB, 16 * MIB, 64 * MIB};
#define N_TPUT (sizeof tput_sizes / sizeof tput_sizes[0])
static const uint64_t fork_sizes[] = {1 * MIB, 16 * MIB, 256 * MIB, 1024 * MIB};
#define N_FORK (sizeof fork_sizes / sizeof fork_sizes[0])

/* what the cleanup on a failure has to stop */
static mlt_test_cluster_t cluster, base_cluster;
static int cluster_up, base_up;
static pid_t peer_pid = -1;

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench/ps: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (peer_pid > 0) {
        kill(peer_pid, SIGKILL);
        waitpid(peer_pid, NULL, 0);
    }
    if (cluster_up)
        mlt_test_stop(&cluster);
    if (base_up)
        mlt_test_stop(&base_cluster);
    exit(1);
}

void *alloc_filled(size_t bytes, float value)
{
    float *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p)
        die("out of memory allocating %zu bytes", bytes);
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        p[i] = value; /* touches every page: no page faults inside the timing */
    return p;
}

static const char *size_name(uint64_t bytes, char *buf, size_t len)
{
    if (bytes >= 1024 * MIB && bytes % (1024 * MIB) == 0)
        snprintf(buf, len, "%llu GiB", (unsigned long long)(bytes / (1024 * MIB)));
    else
        snprintf(buf, len, "%llu MiB", (unsigned long long)(bytes / MIB));
    return buf;
}

/* ---- 1. ours: through mltunerd -------------------------------------------- */

typedef struct ours_result {
    double mbps; /* (2 * bytes * iters) / seconds / 1e6 */
    double iter_us; /* median iteration (pull + push + clock) */
    int iters;
    double pull_ms; /* mean per iteration */
    double push_ms; /* mean mlt_push + mlt_clock per iteration */
    int cache_hits; /* pulls that did not reach the daemon (must be 0) */
} ours_result_t;

void check_client(mlt_client_t *c, int rc, const char *what)
{
    if (rc < 0)
        die("%s failed: %s (%s)", what, mlt_client_error(c), strerror(-rc));
}

/* One iteration at clock *clock: pull, check it was a real pull with every
 * earlier push in it, push, clock. With view, the zero-copy calls
 * (mlt_pull_view, mlt_push_buffer): the gradient is written into the push
 * buffer, standing in for a step computing it there; returns the seconds that
 * took, which are not the data path's. */
static double ours_iteration(mlt_client_t *c, float *params, const float *grad, uint64_t floats,
                             int64_t *clock, ours_result_t *r, double *t_pull, double *t_push,
                             bool view)
{
    float *dst[1] = {params};
    const float *w = params;
    int64_t ck = *clock;
    double t0 = mlt_time_mono();
    if (view)
        check_client(c, mlt_pull_view(c, BENCH_BRANCH, ck, &w), "mlt_pull_view");
    else
        check_client(c, mlt_pull(c, BENCH_BRANCH, ck, dst), "mlt_pull");
    double t1 = mlt_time_mono();
    if (mlt_pull_min_clock(c, BENCH_BRANCH) != ck)
        r->cache_hits++;
    /* plain SGD from zero: w = -clock * lr * grad, accumulated in float */
    float want = 0.0f;
    for (int64_t k = 0; k < ck; k++)
        want -= BENCH_LR * BENCH_GRAD;
    float tol = fabsf(want) * 1e-4f + 1e-12f;
    if (fabsf(w[0] - want) > tol || fabsf(w[floats - 1] - want) > tol)
        die("pull at clock %lld saw w[0] = %g, w[last] = %g; expected %g (a stale pull?)",
            (long long)ck, w[0], w[floats - 1], want);
    const float *g = grad;
    double fill = 0;
    if (view) {
        float *buf = mlt_push_buffer(c, BENCH_BRANCH, 0);
        if (!buf)
            die("mlt_push_buffer: none (transport: %s)", mlt_client_transport(c));
        double f0 = mlt_time_mono();
        memcpy(buf, grad, floats * sizeof(float));
        fill = mlt_time_mono() - f0;
        g = buf;
    }
    double t1b = mlt_time_mono();
    check_client(c, mlt_push(c, BENCH_BRANCH, 0, g), "mlt_push");
    check_client(c, mlt_clock(c, BENCH_BRANCH, ck + 1), "mlt_clock");
    double t2 = mlt_time_mono();
    *t_pull += t1 - t0;
    *t_push += t2 - t1b;
    *clock = ck + 1;
    return fill;
}

static char ours_transport[640]; /* how ours moved the data (mlt_client_transport) */

static ours_result_t ours_run(mlt_client_t *c, uint64_t bytes, double seconds, bool view)
{
    static double iter_s[ITER_CAP];
    uint64_t floats = bytes / sizeof(float);
    mlt_table_def_t table = {"w", floats};
    mlt_job_def_t job = {.name = "bench-ps", .n_workers = 1, .rule = "sgd", .tables = &table,
                         .n_tables = 1};
    check_client(c, mlt_client_register(c, &job), "mlt_client_register");
    snprintf(ours_transport, sizeof ours_transport, "%s", mlt_client_transport(c));
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = BENCH_LR;
    t.staleness = 0;
    check_client(c, mlt_branch_create(c, BENCH_BRANCH, MLT_BRANCH_TRAIN, &t), "mlt_branch_create");

    float *params = alloc_filled(bytes, 0.0f);
    float *grad = alloc_filled(bytes, BENCH_GRAD);
    ours_result_t r = {0};
    int64_t clock = 0;
    double tp = 0, tq = 0;
    for (int i = 0; i < BENCH_WARMUP; i++)
        ours_iteration(c, params, grad, floats, &clock, &r, &tp, &tq, view);
    tp = tq = 0;
    double start = mlt_time_mono(), el, last = start, fills = 0;
    do {
        double fill = ours_iteration(c, params, grad, floats, &clock, &r, &tp, &tq, view);
        fills += fill;
        el = mlt_time_mono() - start;
        if (r.iters < ITER_CAP)
            iter_s[r.iters] = start + el - last - fill;
        last = start + el;
        r.iters++;
    } while (el < seconds || r.iters < BENCH_MIN_ITERS);
    int kept = r.iters < ITER_CAP ? r.iters : ITER_CAP;
    qsort(iter_s, (size_t)kept, sizeof iter_s[0], cmp_double);
    r.iter_us = iter_s[kept / 2] * 1e6;
    r.mbps = 2.0 * (double)bytes * r.iters / (el - fills) / 1e6;
    r.pull_ms = tp / r.iters * 1e3;
    r.push_ms = tq / r.iters * 1e3;

    check_client(c, mlt_client_job_end(c), "mlt_client_job_end");
    free(params);
    free(grad);
    return r;
}

/* ---- 2. peer: raw ZeroMQ between two processes ---------------------------- */

static void zcheck(int rc, const char *what)
{
    if (rc < 0)
        die("%s: %s", what, zmq_strerror(zmq_errno()));
}

static void set_hwm0(void *sock)
{
    int zero = 0;
    zcheck(zmq_setsockopt(sock, ZMQ_SNDHWM, &zero, sizeof zero), "zmq_setsockopt(SNDHWM)");
    zcheck(zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof zero), "zmq_setsockopt(RCVHWM)");
    zcheck(zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero), "zmq_setsockopt(LINGER)");
}

/* The child: binds a ROUTER, tells the parent its endpoint through fd, then
 * answers every message with the same frame layout from its own buffer,
 * zero-copy, until an empty one-frame message. Never returns. */
static void peer_child(int fd, size_t max_bytes)
{
    char *buf = alloc_filled(max_bytes, 1.0f);
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    if (!sock)
        die("peer: zmq_socket: %s", zmq_strerror(zmq_errno()));
    set_hwm0(sock);
    zcheck(zmq_bind(sock, "tcp://127.0.0.1:0"), "peer: zmq_bind");
    char ep[256];
    size_t len = sizeof ep;
    zcheck(zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len), "peer: ZMQ_LAST_ENDPOINT");
    size_t n = strlen(ep) + 1;
    if (write(fd, ep, n) != (ssize_t)n)
        die("peer: write to pipe: %s", strerror(errno));
    close(fd);

    size_t cap = 4096, nf;
    size_t *sizes = malloc(cap * sizeof *sizes);
    if (!sizes)
        die("peer: out of memory");
    zmq_msg_t id, m;
    for (;;) {
        zmq_msg_init(&id);
        zcheck(zmq_msg_recv(&id, sock, 0), "peer: recv id");
        nf = 0;
        size_t total = 0;
        int more = zmq_msg_more(&id);
        while (more) {
            zmq_msg_init(&m);
            zcheck(zmq_msg_recv(&m, sock, 0), "peer: recv");
            if (nf == cap) {
                cap *= 2;
                sizes = realloc(sizes, cap * sizeof *sizes);
                if (!sizes)
                    die("peer: out of memory");
            }
            sizes[nf++] = zmq_msg_size(&m);
            total += zmq_msg_size(&m);
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (nf == 1 && total == 0)
            break; /* quit */
        if (total > max_bytes)
            die("peer: %zu bytes exceed the %zu-byte buffer", total, max_bytes);
        zcheck(zmq_msg_send(&id, sock, ZMQ_SNDMORE), "peer: send id");
        size_t off = 0;
        for (size_t i = 0; i < nf; i++) {
            zmq_msg_init_data(&m, buf + off, sizes[i], NULL, NULL); /* constant: never freed */
            zcheck(zmq_msg_send(&m, sock, i + 1 < nf ? ZMQ_SNDMORE : 0), "peer: send");
            off += sizes[i];
        }
    }
    zmq_msg_close(&id);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    free(sizes);
    free(buf);
    _exit(0);
}

/* Forks the child before this process has any ZeroMQ context; *ep gets its endpoint. */
static void peer_start(size_t max_bytes, char *ep, size_t eplen)
{
    int fds[2];
    if (pipe(fds) < 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        peer_child(fds[1], max_bytes);
    }
    peer_pid = pid;
    close(fds[1]);
    size_t got = 0;
    while (got < eplen) {
        ssize_t r = read(fds[0], ep + got, eplen - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(ep, '\0', got))
            break;
    }
    close(fds[0]);
    if (!got || !memchr(ep, '\0', got))
        die("peer child sent no endpoint");
}

/* One round trip: bytes out in frames of `frame` bytes, the same back. */
static void peer_iteration(void *sock, const char *buf, size_t bytes, size_t frame)
{
    for (size_t off = 0; off < bytes; off += frame) {
        size_t len = bytes - off < frame ? bytes - off : frame;
        zmq_msg_t m;
        zmq_msg_init_data(&m, (void *)(buf + off), len, NULL, NULL);
        zcheck(zmq_msg_send(&m, sock, off + len < bytes ? ZMQ_SNDMORE : 0), "peer: send");
    }
    size_t total = 0;
    int more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zcheck(zmq_msg_recv(&m, sock, 0), "peer: recv");
        total += zmq_msg_size(&m);
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    if (total != bytes)
        die("peer answered %zu bytes to %zu", total, bytes);
}

static double peer_run(void *sock, const char *buf, size_t bytes, size_t frame)
{
    for (int i = 0; i < BENCH_WARMUP; i++)
        peer_iteration(sock, buf, bytes, frame);
    int iters = 0;
    double start = mlt_time_mono(), el;
    do {
        peer_iteration(sock, buf, bytes, frame);
        iters++;
        el = mlt_time_mono() - start;
    } while (el < BENCH_MIN_SECONDS || iters < BENCH_MIN_ITERS);
    return 2.0 * (double)bytes * iters / el / 1e6;
}

static void peer_stop(void *sock)
{
    zcheck(zmq_send(sock, "", 0, 0), "peer: send quit");
    int st = 0;
    if (waitpid(peer_pid, &st, 0) != peer_pid)
        die("waitpid(peer): %s", strerror(errno));
    peer_pid = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("peer child ended badly (status %d)", st);
}

/* ---- 3. fork through the store API ---------------------------------------- */

typedef struct fork_result {
    double us;              /* median of FORK_REPS forks */
    long long rss_bytes;    /* resident growth per live fork */
    long long malloc_bytes; /* malloc'd bytes (mallinfo2) per live fork */
    long long alloc_diff;   /* change of mlt_store_allocated over the live forks */
} fork_result_t;

/* Bytes malloc has handed out and not had back (heap and mmapped). */
static long long malloc_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (long long)(mi.uordblks + mi.hblkhd);
}

static long long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        die("/proc/self/statm: %s", strerror(errno));
    unsigned long long size = 0, res = 0;
    int n = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    if (n != 2)
        die("/proc/self/statm: unexpected format");
    return (long long)res * sysconf(_SC_PAGESIZE);
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static fork_result_t fork_run(uint64_t bytes)
{
    char err[256];
    mlt_store_t *st = mlt_store_new(FORK_CHUNK_FLOATS, 1ull << 40);
    if (!st)
        die("mlt_store_new: %s", strerror(errno));
    mlt_table_spec_t table = {"w", bytes / sizeof(float)};
    int rc = mlt_store_set_job(st, "bench-fork", 1, MLT_RULE_SGD, &table, 1, 0, 1, err, sizeof err);
    if (rc)
        die("mlt_store_set_job: %s", err);
    mlt_tunables_t t = {.h = mlt_hyper_default(), .staleness = 0};
    if ((rc = mlt_store_create(st, 0, MLT_BRANCH_TRAIN, &t, err, sizeof err)))
        die("mlt_store_create: %s", err);

    fork_result_t r = {0};
    double us[FORK_REPS];
    for (int i = 0; i < FORK_REPS; i++) {
        double t0 = mlt_time_mono();
        rc = mlt_store_fork(st, 1, 0, MLT_BRANCH_TRAIN, &t, err, sizeof err);
        double t1 = mlt_time_mono();
        if (rc)
            die("mlt_store_fork: %s", err);
        if ((rc = mlt_store_free(st, 1)))
            die("mlt_store_free: %s", strerror(-rc));
        us[i] = (t1 - t0) * 1e6;
    }
    qsort(us, FORK_REPS, sizeof us[0], cmp_double);
    r.us = us[FORK_REPS / 2];

    /* Free memory malloc keeps resident would hide the forks' pages from the
     * resident count: give it back first, so each fork's bookkeeping has to
     * fault in pages of its own. */
    malloc_trim(0);
    uint64_t alloc0 = mlt_store_allocated(st);
    long long rss0 = resident_bytes(), heap0 = malloc_in_use();
    for (uint32_t i = 0; i < FORK_REPS; i++)
        if ((rc = mlt_store_fork(st, 10 + i, 0, MLT_BRANCH_TRAIN, &t, err, sizeof err)))
            die("mlt_store_fork: %s", err);
    long long rss1 = resident_bytes(), heap1 = malloc_in_use();
    r.alloc_diff = (long long)(mlt_store_allocated(st) - alloc0);
    r.rss_bytes = (rss1 - rss0) / FORK_REPS;
    r.malloc_bytes = (heap1 - heap0) / FORK_REPS;
    for (uint32_t i = 0; i < FORK_REPS; i++)
        if ((rc = mlt_store_free(st, 10 + i)))
            die("mlt_store_free: %s", strerror(-rc));
    if (mlt_store_allocated(st) != alloc0)
        die("freeing the forks changed allocated bytes from %llu to %llu",
            (unsigned long long)alloc0, (unsigned long long)mlt_store_allocated(st));
    mlt_store_destroy(&st);
    if (r.alloc_diff != 0)
        die("a fork of %llu bytes allocated %lld chunk bytes; it must share every chunk",
            (unsigned long long)bytes, r.alloc_diff / FORK_REPS);
    return r;
}

/* ---- main ------------------------------------------------------------------- */

/* One mltunerd for a profile mode, and this process's client of it. */
static mlt_client_t *profile_start(void)
{
    static const char *const extra[] = {"memory_limit=8G", NULL};
    if (mlt_test_start(&cluster, 1, extra) != 0)
        die("could not start mltunerd");
    cluster_up = 1;
    char err[512];
    mlt_client_t *c = mlt_client_new(cluster.eps, 1, 0, err, sizeof err);
    if (!c)
        die("mlt_client_new: %s", err);
    return c;
}

/* `ps ours MIB SECONDS`: only the daemon path, one size, for a profiler. */
static int profile_ours(uint64_t mib, double seconds)
{
    mlt_client_t *c = profile_start();
    ours_result_t r = ours_run(c, mib * MIB, seconds, false);
    printf("ours %llu MiB: %.0f MB/s, %d iterations, pull %.2f ms, push+clock %.2f ms, "
           "cache hits %d\n",
           (unsigned long long)mib, r.mbps, r.iters, r.pull_ms, r.push_ms, r.cache_hits);
    mlt_client_destroy(&c);
    cluster_up = 0;
    return mlt_test_stop(&cluster) ? 1 : 0;
}

/* `ps clock SECONDS ROUNDS`: only the breakdown and untraced 1 MiB rows. */
static int profile_clock(double seconds, int rounds)
{
    mlt_client_t *c = profile_start();
    for (int k = 0; k < rounds; k++) {
        double bound = copy_bound_us(MIB);
        ours_result_t r = ours_run(c, MIB, seconds, false);
        ours_result_t v = ours_run(c, MIB, seconds, true);
        printf("round %d: 1 MiB pull+push+clock %.1f us (%d iterations), zero-copy calls %.1f "
               "us, copy bound %.1f us, ratios %.2f and %.2f\n",
               k, r.iter_us, r.iters, v.iter_us, bound, r.iter_us / bound, v.iter_us / bound);
        for (uint32_t st = 0; st <= 2; st += 2) {
            breakdown_t b = breakdown_run(c, one_table, 1, st, seconds, false);
            breakdown_print(&b, bound);
            b = breakdown_run(c, mlp_tables, MLP_TABLES, st, seconds, false);
            breakdown_print(&b, bound);
            if (st == 0) {
                b = breakdown_run(c, one_table, 1, st, seconds, true);
                breakdown_print(&b, bound);
            }
        }
    }
    mlt_client_destroy(&c);
    cluster_up = 0;
    return mlt_test_stop(&cluster) ? 1 : 0;
}

/* `ps ab SECONDS ROUNDS`: see the top of the file. */
static int profile_ab(double seconds, int rounds)
{
    enum { V = 5, MAXR = 64 };
    /* which daemon (0: older), the pull asked at the clock, the segment mapped */
    static const struct {
        int daemon, prefetch, map;
        const char *name;
    } var[V] = {{0, 0, 0, "older daemon"},
                {0, 1, 0, "older daemon, prefetch"},
                {0, 1, 1, "older daemon, prefetch, mapped"},
                {1, 1, 0, "this daemon, prefetch, pread"},
                {1, 1, 1, "this daemon, prefetch, mapped"}};
    static const char *const extra[] = {"memory_limit=8G", NULL};
    const char *base = getenv("MLT_BASE_ROOT"), *root = getenv("MLT_BUILD_ROOT");
    if (!base || !root || rounds < 1 || rounds > MAXR)
        die("ps ab needs MLT_BASE_ROOT and MLT_BUILD_ROOT, and 1..%d rounds", MAXR);
    char keep[4096];
    snprintf(keep, sizeof keep, "%s", root);
    setenv("MLT_BUILD_ROOT", base, 1);
    if (mlt_test_start(&base_cluster, 1, extra) != 0)
        die("could not start the older mltunerd from %s", base);
    base_up = 1;
    setenv("MLT_BUILD_ROOT", keep, 1);
    if (mlt_test_start(&cluster, 1, extra) != 0)
        die("could not start mltunerd");
    cluster_up = 1;
    char err[512];
    mlt_client_t *cl[2];
    cl[0] = mlt_client_new(base_cluster.eps, 1, 0, err, sizeof err);
    cl[1] = cl[0] ? mlt_client_new(cluster.eps, 1, 0, err, sizeof err) : NULL;
    if (!cl[1])
        die("mlt_client_new: %s", err);
    double us[V][MAXR], ratio[V][MAXR], bound[MAXR];
    for (int k = 0; k < rounds; k++) {
        bound[k] = copy_bound_us(MIB);
        for (int v = 0; v < V; v++) {
            int vv = k % 2 ? V - 1 - v : v; /* alternate the order */
            mlt_client_t *c = cl[var[vv].daemon];
            c->no_clock_prefetch = !var[vv].prefetch;
            c->shm_map_off = !var[vv].map;
            us[vv][k] = ours_run(c, MIB, seconds, false).iter_us;
            ratio[vv][k] = us[vv][k] / bound[k];
        }
    }
    qsort(bound, (size_t)rounds, sizeof bound[0], cmp_double);
    printf("# 1 MiB pull+push+clock, staleness 0, one worker: median us per iteration, "
           "%d interleaved rounds of %.1f s; copy bound %.1f us (%.1f..%.1f)\n",
           rounds, seconds, bound[rounds / 2], bound[0], bound[rounds - 1]);
    printf("%-30s %9s %16s %9s %14s\n", "variant", "us", "range", "x copy", "range");
    for (int v = 0; v < V; v++) {
        qsort(us[v], (size_t)rounds, sizeof us[v][0], cmp_double);
        qsort(ratio[v], (size_t)rounds, sizeof ratio[v][0], cmp_double);
        printf("%-30s %9.1f %7.1f..%-7.1f %9.2f %6.2f..%-6.2f\n", var[v].name, us[v][rounds / 2],
               us[v][0], us[v][rounds - 1], ratio[v][rounds / 2], ratio[v][0],
               ratio[v][rounds - 1]);
    }
    mlt_client_destroy(&cl[0]);
    mlt_client_destroy(&cl[1]);
    cluster_up = base_up = 0;
    int bad = mlt_test_stop(&cluster) + mlt_test_stop(&base_cluster);
    return bad ? 1 : 0;
}

static int cmp_ours(const void *a, const void *b)
{
    double x = ((const ours_result_t *)a)->mbps, y = ((const ours_result_t *)b)->mbps;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "ours") == 0)
        return profile_ours(strtoull(argv[2], NULL, 10), atof(argv[3]));
    if (argc == 4 && strcmp(argv[1], "ab") == 0)
        return profile_ab(atof(argv[2]), atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "clock") == 0)
        return profile_clock(atof(argv[2]), atoi(argv[3]));
    if (argc != 1)
        die("usage: %s [ours MIB SECONDS | clock SECONDS ROUNDS | ab SECONDS ROUNDS]", argv[0]);
    uint64_t max_bytes = tput_sizes[N_TPUT - 1];
    char peer_ep[256];
    peer_start(max_bytes, peer_ep, sizeof peer_ep);

    static const char *const extra[] = {"memory_limit=8G", NULL};
    if (mlt_test_start(&cluster, 1, extra) != 0)
        die("could not start mltunerd (MLT_BUILD_ROOT=%s)",
            getenv("MLT_BUILD_ROOT") ? getenv("MLT_BUILD_ROOT") : "(unset)");
    cluster_up = 1;
    char err[512];
    mlt_client_t *c = mlt_client_new(cluster.eps, 1, 0, err, sizeof err);
    if (!c)
        die("mlt_client_new: %s", err);

    void *zctx = zmq_ctx_new();
    void *psock = zctx ? zmq_socket(zctx, ZMQ_DEALER) : NULL;
    if (!psock)
        die("zmq_socket: %s", zmq_strerror(zmq_errno()));
    set_hwm0(psock);
    zcheck(zmq_connect(psock, peer_ep), "zmq_connect(peer)");
    char *pbuf = alloc_filled(max_bytes, 2.0f);

    /* Rounds interleave the contenders so that a burst of load elsewhere on
     * the machine hits all of them; each row reports its median round. */
    ours_result_t ours_r[N_TPUT][BENCH_ROUNDS];
    double frames_r[N_TPUT][BENCH_ROUNDS], one_r[N_TPUT][BENCH_ROUNDS];
    double bound_r[BENCH_ROUNDS], clock_r[BENCH_ROUNDS], cvc_r[BENCH_ROUNDS];
    double view_r[BENCH_ROUNDS], vvc_r[BENCH_ROUNDS]; /* the zero-copy calls */
    for (int k = 0; k < BENCH_ROUNDS; k++) {
        for (size_t i = 0; i < N_TPUT; i++) {
            ours_r[i][k] = ours_run(c, tput_sizes[i], BENCH_MIN_SECONDS, false);
            frames_r[i][k] = peer_run(psock, pbuf, tput_sizes[i], BENCH_FRAME);
            one_r[i][k] = peer_run(psock, pbuf, tput_sizes[i], tput_sizes[i]);
        }
        bound_r[k] = copy_bound_us(tput_sizes[0]); /* 1 MiB */
        clock_r[k] = ours_r[0][k].iter_us;
        cvc_r[k] = clock_r[k] / bound_r[k];
        view_r[k] = ours_run(c, tput_sizes[0], BENCH_MIN_SECONDS, true).iter_us;
        vvc_r[k] = view_r[k] / bound_r[k];
    }
    breakdown_t bd[4];
    for (int i = 0; i < 4; i++)
        bd[i] = i % 2 ? breakdown_run(c, mlp_tables, MLP_TABLES, i < 2 ? 0 : 2, BENCH_MIN_SECONDS, false)
                      : breakdown_run(c, one_table, 1, i < 2 ? 0 : 2, BENCH_MIN_SECONDS, false);
    double bd_bound = copy_bound_us(tput_sizes[0]);
    peer_stop(psock);
    zmq_close(psock);
    zmq_ctx_term(zctx);
    free(pbuf);
    mlt_client_destroy(&c);
    cluster_up = 0;
    int bad = mlt_test_stop(&cluster);
    if (bad)
        die("%d daemon(s) did not stop cleanly; logs in %s", bad, cluster.dir);

    ours_result_t ours[N_TPUT];
    double peer_frames[N_TPUT], peer_one[N_TPUT], peer[N_TPUT], ratio[N_TPUT];
    double ratio_r[N_TPUT][BENCH_ROUNDS];
    int hits = 0;
    for (size_t i = 0; i < N_TPUT; i++) {
        for (int k = 0; k < BENCH_ROUNDS; k++) {
            hits += ours_r[i][k].cache_hits;
            double pk = frames_r[i][k] > one_r[i][k] ? frames_r[i][k] : one_r[i][k];
            ratio_r[i][k] = ours_r[i][k].mbps / pk;
        }
        qsort(ratio_r[i], BENCH_ROUNDS, sizeof ratio_r[i][0], cmp_double);
        ratio[i] = ratio_r[i][BENCH_ROUNDS / 2];
        qsort(ours_r[i], BENCH_ROUNDS, sizeof ours_r[i][0], cmp_ours);
        qsort(frames_r[i], BENCH_ROUNDS, sizeof frames_r[i][0], cmp_double);
        qsort(one_r[i], BENCH_ROUNDS, sizeof one_r[i][0], cmp_double);
        ours[i] = ours_r[i][BENCH_ROUNDS / 2];
        peer_frames[i] = frames_r[i][BENCH_ROUNDS / 2];
        peer_one[i] = one_r[i][BENCH_ROUNDS / 2];
        peer[i] = peer_frames[i] > peer_one[i] ? peer_frames[i] : peer_one[i];
    }

    fork_result_t forks[N_FORK];
    for (size_t i = 0; i < N_FORK; i++)
        forks[i] = fork_run(fork_sizes[i]);

    char sz[32];
    printf("# pull+push: MB/s = 2 * model bytes * iterations / s (1 MB = 1e6 bytes), "
           "median of %d rounds\n",
           BENCH_ROUNDS);
    printf("# ours: data by %s\n", ours_transport);
    printf("# peer = max(64 KiB frames, one frame), raw ZeroMQ zero-copy, tcp loopback\n");
    printf("# ratio = median over rounds of ours / peer of the same round (min..max)\n");
    printf("%-12s %-8s %10s %10s %7s %12s\n", "what", "size", "ours", "peer", "ratio", "range");
    for (size_t i = 0; i < N_TPUT; i++)
        printf("%-12s %-8s %10.0f %10.0f %7.2f %5.2f..%-5.2f\n", "pull+push",
               size_name(tput_sizes[i], sz, sizeof sz), ours[i].mbps, peer[i], ratio[i],
               ratio_r[i][0], ratio_r[i][BENCH_ROUNDS - 1]);
    printf("\n# detail: ours per iteration (median round); peer by frame layout (MB/s)\n");
    printf("%-8s %6s %9s %14s %10s %12s %10s\n", "size", "iters", "pull ms", "push+clock ms",
           "cache hits", "peer 64KiB", "peer 1");
    for (size_t i = 0; i < N_TPUT; i++)
        printf("%-8s %6d %9.2f %14.2f %10d %12.0f %10.0f\n",
               size_name(tput_sizes[i], sz, sizeof sz), ours[i].iters, ours[i].pull_ms,
               ours[i].push_ms, ours[i].cache_hits, peer_frames[i], peer_one[i]);
    printf("\n# fork: median of %d forks; bytes = resident growth per live fork; "
           "malloc = bytes malloc'd per fork; store chunk bytes: +0\n",
           FORK_REPS);
    printf("%-12s %-8s %10s %10s %10s\n", "what", "size", "us", "bytes", "malloc");
    for (size_t i = 0; i < N_FORK; i++)
        printf("%-12s %-8s %10.1f %10lld %10lld\n", "fork", size_name(fork_sizes[i], sz, sizeof sz),
               forks[i].us, forks[i].rss_bytes, forks[i].malloc_bytes);

    for (int i = 0; i < 4; i++)
        breakdown_print(&bd[i], bd_bound);
    qsort(bound_r, BENCH_ROUNDS, sizeof bound_r[0], cmp_double);
    qsort(clock_r, BENCH_ROUNDS, sizeof clock_r[0], cmp_double);
    qsort(cvc_r, BENCH_ROUNDS, sizeof cvc_r[0], cmp_double);
    qsort(view_r, BENCH_ROUNDS, sizeof view_r[0], cmp_double);
    qsort(vvc_r, BENCH_ROUNDS, sizeof vvc_r[0], cmp_double);
    printf("\n# 1 MiB pull+push+clock, staleness 0, untraced: median iteration %.1f us "
           "(rounds %.1f..%.1f); copy bound (memcpy 1 MiB + 1 MiB) %.1f us (%.1f..%.1f); "
           "ratio per round %.2f..%.2f\n",
           clock_r[BENCH_ROUNDS / 2], clock_r[0], clock_r[BENCH_ROUNDS - 1],
           bound_r[BENCH_ROUNDS / 2], bound_r[0], bound_r[BENCH_ROUNDS - 1], cvc_r[0],
           cvc_r[BENCH_ROUNDS - 1]);
    printf("# the same with the zero-copy calls (mlt_pull_view, mlt_push_buffer; the gradient "
           "written into the buffer untimed): median %.1f us (rounds %.1f..%.1f), ratio per "
           "round %.2f..%.2f\n",
           view_r[BENCH_ROUNDS / 2], view_r[0], view_r[BENCH_ROUNDS - 1], vvc_r[0],
           vvc_r[BENCH_ROUNDS - 1]);
    if (hits)
        printf("\n# WARNING: %d pulls were served from the client cache\n", hits);
    printf("ps_vs_zmq=%.2f fork_1gib_us=%.1f fork_1gib_extra_bytes=%lld clock_1mib_us=%.1f "
           "clock_vs_copy=%.2f clock_1mib_view_us=%.1f clock_view_vs_copy=%.2f\n",
           ratio[N_TPUT - 1], forks[N_FORK - 1].us, forks[N_FORK - 1].rss_bytes,
           clock_r[BENCH_ROUNDS / 2], cvc_r[BENCH_ROUNDS / 2], view_r[BENCH_ROUNDS / 2],
           vvc_r[BENCH_ROUNDS / 2]);
    return hits ? 1 : 0;
}
