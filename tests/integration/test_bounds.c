/* test_bounds.c - what one client can cost the real mltunerd, and what others
 * still get (issue #12, "bounded resources per client"):
 *  - a client that sends thousands of pulls and never reads the replies: the
 *    daemon's resident memory stays bounded (its pulls are refused with
 *    ENOBUFS once its unsent reply bytes pass the limit), and a well-behaved
 *    client is still served, its pull values exact;
 *  - a REGISTER at the wire's limits (4096 tables of 2^34 floats) is refused
 *    against memory_limit at once, naming the sizes, and another client's
 *    status and a normal job right after are served;
 *  - 30 HTTP connections from one address that never send a request: a
 *    scrape from another address still gets its metrics;
 *  - a stopped (SIGSTOP) shard: `mltunerctl branches` fails naming it,
 *    `mltunerctl metrics` and the HTTP scrape report it down, each within a
 *    few seconds, and SIGTERM of the coordinator's daemon still exits 0 soon;
 *  - SIGHUP leaves the daemon running and serving, and says so in its log;
 *  - a memory_limit too small for a search: the job's trials run fewer at
 *    once (the worst live one freed to make room), and where training itself
 *    does not fit, the job fails saying how many branches memory_limit holds.
 * The time bounds are generous "does not hang" checks, not measurements. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <zmq.h>

#include "common/timeutil.h"
#include "proto/layout.h"
#include "proto/limits.h"
#include "proto/wire.h"
#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"
#include "client/mltuner.h"

#define W_SIZE                         50000u /* 200 KB of parameters: one packed pull reply */
#define N_UNREAD                       3000   /* pulls the greedy client sends and does not read */
#if defined(__SANITIZE_ADDRESS__) /* ASan's quarantine and shadow memory hold far more */
#define RSS_BOUND_MIB                  900
#else
#define RSS_BOUND_MIB                  300    /* unbounded, those replies took ~600 MiB */
#endif
#define HANG_S                         10.0   /* "does not hang" */
#define MLT_MAX_PARKED_PER_CLIENT_TEST 4096u  /* daemon/clientq.h's MLT_MAX_PARKED_PER_CLIENT */

static mlt_test_cluster_t cl;

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void teardown(void)
{
    for (int i = 0; i < cl.n; i++)
        if (cl.pids[i] > 0)
            kill(cl.pids[i], SIGCONT);
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* Waits (up to bound_s) until shard 0's request counter, asked through
 * `good`, reaches `want` (the daemon has served that many requests); returns
 * the count last seen, and its error counter in *errors (may be NULL). */
static uint64_t wait_served(mlt_client_t *good, uint64_t want, double bound_s, uint64_t *errors)
{
    uint64_t served = 0;
    mlt_server_status_t st;
    for (int i = 0; i < (int)(bound_s * 20) && served < want; i++) {
        ck_assert_msg(mlt_client_status(good, 0, &st) == 0, "%s", mlt_client_error(good));
        served = st.requests;
        if (errors)
            *errors = st.errors;
        mlt_server_status_free(&st);
        nap_ms(50);
    }
    return served;
}

static long rss_mib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

/* Packs and sends one header on a raw socket. */
static void raw_send(void *sock, mlt_header_t *h)
{
    ck_assert_int_eq(mlt_wire_send(sock, h, 0), 0);
}

/* The next whole message on a raw socket (NULL after timeout_ms of silence);
 * the decoded header, caller frees. */
static mlt_header_t *raw_recv(void *sock, long timeout_ms)
{
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) != 1)
        return NULL;
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
    char err[256];
    mlt_header_t *h = NULL;
    int rc = mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &h, err, sizeof err);
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    ck_assert_msg(rc == 0, "reply does not decode: %s", err);
    while (more) {
        zmq_msg_init(&m);
        ck_assert_int_ge(zmq_msg_recv(&m, sock, 0), 0);
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return h;
}

/* ---- a client that does not read ------------------------------------------ */

START_TEST(test_unread_pulls)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    char err[512];
    mlt_client_t *good = mlt_client_new(cl.eps, 1, 0, err, sizeof err);
    ck_assert_msg(good != NULL, "%s", err);
    const mlt_table_def_t tables[] = {{"w", W_SIZE}};
    const mlt_job_def_t job = {"bounds", 1, "sgd", tables, 1, false};
    ck_assert_msg(mlt_client_register(good, &job) == 0, "%s", mlt_client_error(good));
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = 0.5f;
    ck_assert_msg(mlt_branch_create(good, 1, MLT_BRANCH_TRAIN, &t) == 0, "%s",
                  mlt_client_error(good));
    float *w = malloc(W_SIZE * sizeof *w), *got = malloc(W_SIZE * sizeof *got);
    for (uint32_t i = 0; i < W_SIZE; i++)
        w[i] = (float)(i % 13);
    ck_assert_msg(mlt_write(good, 1, 0, w) == 0, "%s", mlt_client_error(good));
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(good, 0, &st) == 0, "%s", mlt_client_error(good));
    const uint32_t n_chunks = (uint32_t)mlt_layout_chunks(W_SIZE, st.chunk_floats);
    mlt_server_status_free(&st);
    const long rss0 = rss_mib(cl.pids[0]);
    const uint64_t base = st.requests;

    /* the greedy client: a receive queue of one message and a tiny kernel
     * buffer, so the replies back up into the daemon */
    void *ctx = zmq_ctx_new(), *raw = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, one = 1, small = 4096;
    zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(raw, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(raw, ZMQ_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(zmq_connect(raw, cl.eps[0]), 0);
    for (int i = 0; i < N_UNREAD; i++) {
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_PULL);
        h.has_request_id = h.has_branch = h.has_clock = h.has_table = 1;
        h.has_chunk_first = h.has_chunk_count = h.has_packed = h.packed = 1;
        h.request_id = (uint64_t)i + 1;
        h.branch = 1;
        h.clock = 0;
        h.table = 0;
        h.chunk_first = 0;
        h.chunk_count = n_chunks;
        raw_send(raw, &h);
    }
    /* the daemon has served them all once its request counter says so */
    uint64_t served = wait_served(good, base + N_UNREAD, 15, NULL);
    ck_assert_msg(served >= base + N_UNREAD, "the daemon served %llu requests",
                  (unsigned long long)served);
    const long rss1 = rss_mib(cl.pids[0]);
    fprintf(stderr, "unread pulls: daemon VmRSS %ld MiB before, %ld MiB after %d unread pulls\n",
            rss0, rss1, N_UNREAD);
    ck_assert_msg(rss1 > 0 && rss1 < RSS_BOUND_MIB,
                  "the daemon holds %ld MiB after %d unread pulls of %u bytes (bound %d MiB)", rss1,
                  N_UNREAD, W_SIZE * 4, RSS_BOUND_MIB);

    /* the well-behaved client is served, with exact values */
    ck_assert_msg(mlt_pull(good, 1, 0, (float *const[]){got}) == 0, "%s", mlt_client_error(good));
    ck_assert_int_eq(memcmp(got, w, W_SIZE * sizeof *w), 0);

    /* the greedy one, reading at last: the first pulls were answered, the
     * rest refused with ENOBUFS, saying why */
    int replies = 0, refused = 0;
    mlt_header_t *r;
    while (replies + refused < N_UNREAD && (r = raw_recv(raw, 5000)) != NULL) {
        if (r->type == MLT__MSG_TYPE__MSG_PULL_REPLY)
            replies++;
        else if (r->type == MLT__MSG_TYPE__MSG_ERROR && r->error_code == ENOBUFS) {
            ck_assert_msg(r->error && strstr(r->error, "not yet sent"), "%s", r->error);
            refused++;
        } else
            ck_abort_msg("unexpected %s: %s", mlt_wire_type_name(r->type),
                         r->error ? r->error : "");
        mlt_wire_free(&r);
    }
    fprintf(stderr, "unread pulls: %d answered, %d refused\n", replies, refused);
    ck_assert_int_eq(replies + refused, N_UNREAD);
    ck_assert_int_gt(replies, 0);
    ck_assert_int_gt(refused, 0);
    zmq_close(raw);
    zmq_ctx_term(ctx);
    mlt_client_destroy(&good);
    free(w);
    free(got);
}
END_TEST

/* ---- per-peer reply queue and parked pulls ---------------------------------- */

/* A raw DEALER to shard 0 that reads nothing unless asked (receive queue of
 * one message, tiny kernel buffer). */
static void *greedy_socket(void *ctx)
{
    void *raw = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, one = 1, small = 4096;
    zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(raw, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(raw, ZMQ_RCVBUF, &small, sizeof small);
    ck_assert_int_eq(zmq_connect(raw, cl.eps[0]), 0);
    return raw;
}

START_TEST(test_queue_caps)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    char err[512];
    mlt_client_t *good = mlt_client_new(cl.eps, 1, 0, err, sizeof err);
    ck_assert_msg(good != NULL, "%s", err);
    const mlt_table_def_t tables[] = {{"w", 1000}};
    const mlt_job_def_t job = {"caps", 1, "sgd", tables, 1, false};
    ck_assert_msg(mlt_client_register(good, &job) == 0, "%s", mlt_client_error(good));
    mlt_tunables_def_t t = mlt_tunables_unset();
    ck_assert_msg(mlt_branch_create(good, 1, MLT_BRANCH_TRAIN, &t) == 0, "%s",
                  mlt_client_error(good));
    void *ctx = zmq_ctx_new();

    /* 100000 requests whose replies are never read: past the per-peer queue
     * (ZMQ_SNDHWM) the replies are dropped and the log says so */
    enum { N_FLOOD = 100000 };
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(good, 0, &st) == 0, "%s", mlt_client_error(good));
    const uint64_t base = st.requests;
    mlt_server_status_free(&st);
    void *flood = greedy_socket(ctx);
    for (int i = 0; i < N_FLOOD; i++) {
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_HEARTBEAT);
        h.has_request_id = 1;
        h.request_id = (uint64_t)i + 1;
        raw_send(flood, &h);
    }
    uint64_t served = wait_served(good, base + N_FLOOD, 20, NULL);
    ck_assert_msg(served >= base + N_FLOOD, "the daemon served %llu requests",
                  (unsigned long long)served);
    char path[400], line[512];
    snprintf(path, sizeof path, "%s/daemon0.log", cl.dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    bool said = false;
    while (!said && fgets(line, sizeof line, f))
        said = strstr(line, "reply dropped") && strstr(line, "unread");
    fclose(f);
    ck_assert_msg(said, "the log does not say replies were dropped");

    /* pulls that must wait (clock 1000, nobody clocks): the per-client cap
     * of parked pulls, then EAGAIN for each one more, saying why */
    enum { EXTRA = 10 };
    void *parker = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(parker, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(parker, cl.eps[0]), 0);
    for (uint32_t i = 0; i < MLT_MAX_PARKED_PER_CLIENT_TEST + EXTRA; i++) {
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_PULL);
        h.has_request_id = h.has_branch = h.has_clock = h.has_table = 1;
        h.has_chunk_first = h.has_chunk_count = 1;
        h.request_id = i + 1;
        h.branch = 1;
        h.clock = 1000;
        h.table = 0;
        h.chunk_first = 0;
        h.chunk_count = 1;
        raw_send(parker, &h);
    }
    for (int i = 0; i < EXTRA; i++) {
        mlt_header_t *r = raw_recv(parker, 5000);
        ck_assert_msg(r != NULL, "refusal %d of %d did not come", i + 1, EXTRA);
        ck_assert_msg(r->type == MLT__MSG_TYPE__MSG_ERROR && r->error_code == EAGAIN && r->error &&
                          strstr(r->error, "per client"),
                      "%s (%d): %s", mlt_wire_type_name(r->type), (int)r->error_code,
                      r->error ? r->error : "");
        ck_assert_uint_gt(r->request_id, MLT_MAX_PARKED_PER_CLIENT_TEST);
        mlt_wire_free(&r);
    }
    ck_assert_ptr_null(raw_recv(parker, 200)); /* the parked ones wait on */
    ck_assert_msg(mlt_client_status(good, 0, &st) == 0, "%s", mlt_client_error(good));
    ck_assert_uint_eq(st.parked, MLT_MAX_PARKED_PER_CLIENT_TEST);
    mlt_server_status_free(&st);

    /* STATUS replies list every branch (here 200: ~10 KB each): a client
     * asking for 12000 (~120 MB) and reading none gets ENOBUFS once its
     * unsent bytes pass the limit, and the daemon stays small */
    for (uint32_t b = 2; b < 200; b++)
        ck_assert_msg(mlt_branch_fork(good, b, 1, MLT_BRANCH_TRAIN, &t) == 0, "%s",
                      mlt_client_error(good));
    enum { N_STATUS = 12000 };
    ck_assert_msg(mlt_client_status(good, 0, &st) == 0, "%s", mlt_client_error(good));
    const uint64_t before = st.requests, errors0 = st.errors;
    uint64_t errors = errors0;
    mlt_server_status_free(&st);
    void *asker = greedy_socket(ctx);
    for (int i = 0; i < N_STATUS; i++) {
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_STATUS);
        h.has_request_id = 1;
        h.request_id = (uint64_t)i + 1;
        raw_send(asker, &h);
    }
    wait_served(good, before + N_STATUS, 20, &errors);
    const long rss = rss_mib(cl.pids[0]);
    fprintf(stderr, "status flood: daemon VmRSS %ld MiB after %d unread STATUS replies\n", rss,
            N_STATUS);
    ck_assert_msg(rss > 0 && rss < RSS_BOUND_MIB, "the daemon holds %ld MiB", rss);
    fprintf(stderr, "status flood: %llu refused\n", (unsigned long long)(errors - errors0));
    ck_assert_uint_gt(errors - errors0, 0); /* the refusals (reading them would take long) */

    /* the well-behaved client is served meanwhile */
    float *got = malloc(1000 * sizeof *got);
    ck_assert_msg(mlt_pull(good, 1, 0, (float *const[]){got}) == 0, "%s", mlt_client_error(good));
    free(got);
    zmq_close(flood);
    zmq_close(parker);
    zmq_close(asker);
    zmq_ctx_term(ctx);
    mlt_client_destroy(&good);
}
END_TEST

/* ---- a REGISTER at the limits --------------------------------------------- */

START_TEST(test_register_limits)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    static Mlt__TableSpec ts[MLT_MAX_TABLES];
    static Mlt__TableSpec *tp[MLT_MAX_TABLES];
    static char names[MLT_MAX_TABLES][8];
    for (uint32_t i = 0; i < MLT_MAX_TABLES; i++) {
        mlt__table_spec__init(&ts[i]);
        snprintf(names[i], sizeof names[i], "t%u", i);
        ts[i].name = names[i];
        ts[i].size = MLT_MAX_TABLE_FLOATS;
        tp[i] = &ts[i];
    }
    Mlt__JobSpec js;
    mlt__job_spec__init(&js);
    js.name = (char *)"huge";
    js.n_workers = 1;
    js.rule = MLT__RULE__RULE_SGD;
    js.n_tables = MLT_MAX_TABLES;
    js.tables = tp;
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_REGISTER);
    h.has_request_id = 1;
    h.request_id = 7;
    h.job = &js;
    void *ctx = zmq_ctx_new(), *raw = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(raw, cl.eps[0]), 0);
    const double t0 = mlt_time_mono();
    raw_send(raw, &h);

    /* another client, right behind it: connects and gets its status */
    char err[512];
    mlt_client_t *other = mlt_client_new(cl.eps, 1, 0, err, sizeof err);
    ck_assert_msg(other != NULL, "%s", err);
    mlt_server_status_t st;
    ck_assert_msg(mlt_client_status(other, 0, &st) == 0, "%s", mlt_client_error(other));
    mlt_server_status_free(&st);
    const double waited = mlt_time_mono() - t0;
    fprintf(stderr, "register at the limits: another client's status answered after %.3f s\n",
            waited);
    ck_assert_msg(waited < HANG_S, "another client waited %.1f s", waited);

    mlt_header_t *r = raw_recv(raw, 5000);
    ck_assert_msg(r != NULL, "no answer to the REGISTER");
    ck_assert_msg(r->type == MLT__MSG_TYPE__MSG_ERROR && r->error_code == ENOMEM,
                  "REGISTER at the limits answered %s (%d): %s", mlt_wire_type_name(r->type),
                  (int)r->error_code, r->error ? r->error : "");
    ck_assert_msg(r->error && strstr(r->error, "memory_limit") && strstr(r->error, "huge"), "%s",
                  r->error);
    mlt_wire_free(&r);

    /* nothing of it stayed: a normal job registers and runs */
    const mlt_table_def_t tables[] = {{"w", 1000}};
    const mlt_job_def_t job = {"after", 1, "sgd", tables, 1, false};
    ck_assert_msg(mlt_client_register(other, &job) == 0, "%s", mlt_client_error(other));
    mlt_tunables_def_t t = mlt_tunables_unset();
    ck_assert_msg(mlt_branch_create(other, 1, MLT_BRANCH_TRAIN, &t) == 0, "%s",
                  mlt_client_error(other));
    zmq_close(raw);
    zmq_ctx_term(ctx);
    mlt_client_destroy(&other);
}
END_TEST

/* ---- HTTP ------------------------------------------------------------------ */

/* A TCP connection to 127.0.0.1:port from source address `from`; fd or -1. */
static int tcp_from(const char *from, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    inet_pton(AF_INET, from, &src.sin_addr);
    struct timeval tv = {HANG_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The value of the sample line `series v` in metrics text, or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

START_TEST(test_slow_http)
{
    ck_assert_int_eq(mlt_test_start_listed(&cl, 1, NULL), 0);
    enum { N_SLOW = 30 };
    int slow[N_SLOW], opened = 0;
    for (int i = 0; i < N_SLOW; i++)
        if ((slow[i] = tcp_from("127.0.0.2", cl.metrics_port[0])) >= 0)
            opened++;
    ck_assert_int_gt(opened, 0);
    nap_ms(200); /* let the daemon accept (or refuse) them all */
    static char out[1 << 17];
    const double t0 = mlt_time_mono();
    int code = mlt_test_http(cl.metrics_port[0], "GET", "/metrics", out, sizeof out);
    const double waited = mlt_time_mono() - t0;
    fprintf(stderr, "slow http: %d idle connections, a scrape answered %d after %.3f s\n", opened,
            code, waited);
    ck_assert_msg(code == 200, "scrape answered %d after %.1f s", code, waited);
    ck_assert_double_eq(sample(out, "mltuner_up"), 1);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"0\"}"), 1);
    for (int i = 0; i < N_SLOW; i++)
        if (slow[i] >= 0)
            close(slow[i]);
}
END_TEST

/* ---- a stopped shard --------------------------------------------------------- */

START_TEST(test_stopped_shard)
{
    ck_assert_int_eq(mlt_test_start_listed(&cl, 2, NULL), 0);
    ck_assert_int_eq(kill(cl.pids[1], SIGSTOP), 0);
    static char out[1 << 17];
    const char *branches[] = {"daemon/mltunerctl", "-c", cl.control, "--timeout", "30",
                              "branches",          NULL};
    double t0 = mlt_time_mono();
    int rc = mlt_test_run(branches, out, sizeof out);
    double waited = mlt_time_mono() - t0;
    fprintf(stderr, "stopped shard: branches exited %d after %.3f s: %s", rc, waited, out);
    ck_assert_msg(rc != 0 && strstr(out, "shard 1") && strstr(out, "no answer"), "exit %d: %s", rc,
                  out);
    ck_assert_msg(waited < HANG_S, "branches took %.1f s", waited);

    const char *metrics[] = {"daemon/mltunerctl", "-c", cl.control, "--timeout", "30",
                             "metrics",           NULL};
    t0 = mlt_time_mono();
    rc = mlt_test_run(metrics, out, sizeof out);
    waited = mlt_time_mono() - t0;
    fprintf(stderr, "stopped shard: metrics exited %d after %.3f s\n", rc, waited);
    ck_assert_msg(rc == 0, "metrics exited %d: %s", rc, out);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"0\"}"), 1);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"1\"}"), 0);
    ck_assert_msg(waited < HANG_S, "metrics took %.1f s", waited);

    t0 = mlt_time_mono();
    int code = mlt_test_http(cl.metrics_port[0], "GET", "/metrics", out, sizeof out);
    waited = mlt_time_mono() - t0;
    fprintf(stderr, "stopped shard: scrape answered %d after %.3f s\n", code, waited);
    ck_assert_int_eq(code, 200);
    ck_assert_double_eq(sample(out, "mltuner_shard_up{shard=\"1\"}"), 0);
    ck_assert_msg(waited < HANG_S, "the scrape took %.1f s", waited);

    /* SIGTERM of the coordinator's daemon while its peer is stopped */
    t0 = mlt_time_mono();
    ck_assert_int_eq(kill(cl.pids[0], SIGTERM), 0);
    int status = -1;
    pid_t done = 0;
    while ((done = waitpid(cl.pids[0], &status, WNOHANG)) == 0 && mlt_time_mono() - t0 < 30)
        nap_ms(20);
    waited = mlt_time_mono() - t0;
    fprintf(stderr, "stopped shard: SIGTERM exit after %.3f s\n", waited);
    ck_assert_msg(done == cl.pids[0], "mltunerd did not exit within 30 s of SIGTERM");
    cl.pids[0] = 0;
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    ck_assert_msg(waited < HANG_S, "SIGTERM took %.1f s", waited);
}
END_TEST

/* ---- SIGHUP ------------------------------------------------------------------ */

START_TEST(test_sighup)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    ck_assert_int_eq(kill(cl.pids[0], SIGHUP), 0);
    nap_ms(300);
    ck_assert_msg(mlt_test_alive(&cl, 0), "SIGHUP ended the daemon");
    char err[512];
    mlt_client_t *c = mlt_client_new(cl.eps, 1, 0, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    mlt_client_destroy(&c);
    char path[400], line[512];
    snprintf(path, sizeof path, "%s/daemon0.log", cl.dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    bool said = false;
    while (!said && fgets(line, sizeof line, f))
        said = strstr(line, "SIGHUP ignored") != NULL;
    fclose(f);
    ck_assert_msg(said, "the log does not say the SIGHUP was ignored");
}
END_TEST

/* ---- a memory_limit too small for the search ------------------------------- */

/* Starts one daemon with memory_limit=limit and one worker, submits the
 * synthetic matrix-factorisation job (a search of 3 design trials and up to
 * 8, its branches ~2.4 MB), waits for it; mltunerctl's output in out, the
 * decision log in dlog. Returns mltunerctl's exit status. */
static int small_memory_job(const char *limit, char *out, size_t len, char *dlog, size_t dlen)
{
    char lim[64], outdir[400];
    snprintf(lim, sizeof lim, "memory_limit=%s", limit);
    const char *extra[] = {lim, NULL};
    ck_assert_int_eq(mlt_test_start(&cl, 1, extra), 0);
    ck_assert_int_eq(mlt_test_start_workers(&cl, 1), 0);
    const char *src = getenv("MLT_SOURCE_ROOT");
    char conf[600];
    snprintf(conf, sizeof conf, "%s/conf/jobs/mf-synth.conf", src ? src : ".");
    snprintf(outdir, sizeof outdir, "%s/out", cl.dir);
    const char *argv[] = {"daemon/mltunerctl",
                          "-c",
                          cl.control,
                          "--timeout",
                          "30",
                          "submit",
                          conf,
                          "--out",
                          outdir,
                          "--set",
                          "workers=1",
                          "--set",
                          "data.synthetic.ratings=50000",
                          "--set",
                          "stop.max_epochs=4",
                          "--set",
                          "stop.target_rmse=0",
                          "--set",
                          "tuner.max_trials=8",
                          "--set",
                          "tuner.max_overhead=1",
                          "--set",
                          "tuner.gain_stop=0",
                          "--wait",
                          NULL};
    int rc = mlt_test_run(argv, out, len);
    mlt_test_wait_workers(&cl, 30);
    char path[500];
    snprintf(path, sizeof path, "%s/decisions.jsonl", outdir);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(dlog, 1, dlen - 1, f) : 0;
    dlog[got] = 0;
    if (f)
        fclose(f);
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
    memset(&cl, 0, sizeof cl);
    return rc;
}

START_TEST(test_small_memory_limit)
{
    static char out[1 << 14], dlog[1 << 20];
    /* below one branch: refused at registration, saying how much a branch needs */
    int rc = small_memory_job("1M", out, sizeof out, dlog, sizeof dlog);
    const char *p = strstr(out, "needs ");
    ck_assert_msg(rc != 0 && p && strstr(out, "not one branch would fit"), "exit %d: %s", rc, out);
    unsigned long long branch = strtoull(p + strlen("needs "), NULL, 10);
    ck_assert_msg(branch > (1u << 20), "%s", out);

    /* three branches: the search runs two trials at once (its design is three:
     * the third frees the worst), then training, which needs four (the
     * initial branch, the training branch, its snapshot and a test), fails
     * saying so */
    char lim[32];
    snprintf(lim, sizeof lim, "%llu", 3 * branch);
    rc = small_memory_job(lim, out, sizeof out, dlog, sizeof dlog);
    fprintf(stderr, "memory_limit 3 branches: exit %d: %s", rc, out);
    ck_assert_msg(strstr(dlog, "memory_limit: room for trial"), "no trial made room: %s", dlog);
    ck_assert_msg(rc != 0 && strstr(out, "refused") && strstr(out, "holds 3 branches"),
                  "exit %d: %s", rc, out);

    /* four: training fits, the search runs at most three trials at once, the job ends */
    snprintf(lim, sizeof lim, "%llu", 4 * branch);
    rc = small_memory_job(lim, out, sizeof out, dlog, sizeof dlog);
    fprintf(stderr, "memory_limit 4 branches: exit %d: %s", rc, out);
    ck_assert_msg(rc == 0 && strstr(out, "done"), "exit %d: %s", rc, out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bounds");
    TCase *tc = tcase_create("bounds");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_unread_pulls);
    tcase_add_test(tc, test_queue_caps);
    tcase_add_test(tc, test_register_limits);
    tcase_add_test(tc, test_slow_http);
    tcase_add_test(tc, test_stopped_shard);
    tcase_add_test(tc, test_sighup);
    tcase_add_test(tc, test_small_memory_limit);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
