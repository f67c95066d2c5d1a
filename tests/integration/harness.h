/* harness.h - start and stop real mltunerd processes on loopback for tests and
 * benchmarks. Each daemon binds tcp://127.0.0.1:0 and writes the endpoint it
 * got to a file, which the harness waits for. The binary is
 * $MLT_BUILD_ROOT/daemon/mltunerd (MLT_BUILD_ROOT is set by meson test). */
#ifndef MLT_TEST_HARNESS_H
#define MLT_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define MLT_TEST_MAX_DAEMONS 8
#define MLT_TEST_MAX_WORKERS 16

typedef struct mlt_test_cluster {
    int n;
    pid_t pids[MLT_TEST_MAX_DAEMONS];
    char endpoints[MLT_TEST_MAX_DAEMONS][128];
    const char *eps[MLT_TEST_MAX_DAEMONS]; /* pointers into endpoints, for mlt_client_new */
    char dir[256];                         /* temporary directory (logs, endpoint files) */
    char control[128];                     /* the coordinator's control endpoint (rank 0) */
    pid_t workers[MLT_TEST_MAX_WORKERS];   /* mltuner-worker processes */
    int n_workers;
    int metrics_port[MLT_TEST_MAX_DAEMONS]; /* HTTP /metrics port (listed clusters), or 0 */
    int listed;                             /* started by mlt_test_start_listed */
    const char *const *extra;               /* the start's extra settings (kept for restarts) */
} mlt_test_cluster_t;

/* Starts n daemons (ranks 0..n-1 of n). extra: further "--set" values such
 * as "memory_limit=1G" (NULL-terminated, may be NULL). Returns 0 or -1 with a
 * message on stderr. Daemon logs go to DIR/daemonN.log. */
int mlt_test_start(mlt_test_cluster_t *c, int n, const char *const *extra);
/* The same, but every daemon is told the whole servers list (on ports picked
 * here), so that the coordinator (rank 0) knows all n shards, as in a real
 * deployment; each also serves HTTP metrics on metrics_port[i]. */
int mlt_test_start_listed(mlt_test_cluster_t *c, int n, const char *const *extra);
/* Sends SIGTERM to every daemon and waits; returns the number that did not exit 0
 * (a daemon that does not exit within 20 s is killed and counts). */
int mlt_test_stop(mlt_test_cluster_t *c);
/* Starts n mltuner-worker processes (ranks 0..n-1) against the coordinator.
 * Their logs go to DIR/workerN.log. 0 or -1. */
int mlt_test_start_workers(mlt_test_cluster_t *c, int n);
/* Waits up to timeout_s for every worker to exit; returns the number that did
 * not exit 0 (those still running are killed and count). */
int mlt_test_wait_workers(mlt_test_cluster_t *c, double timeout_s);
/* Runs a program (argv[0] relative to MLT_BUILD_ROOT, e.g. "daemon/mltunerctl"),
 * with its stdout+stderr in out (NUL-terminated, truncated to outlen); returns
 * its exit status, or -1. */
int mlt_test_run(const char *const *argv, char *out, size_t outlen);
/* Runs `mltunerctl -c <c's control> submit conf --out out_dir` with a --set for
 * each of the NULL-terminated lists sets and more (either may be NULL; at most
 * 48 in all), its output in log as mlt_test_run's; returns its exit status. */
int mlt_test_submit(const mlt_test_cluster_t *c, const char *conf, const char *out_dir,
                    const char *const *sets, const char *const *more, char *log, size_t len);

/* true while daemon i is running. */
int mlt_test_alive(mlt_test_cluster_t *c, int i);

/* Daemon faults (#12): kill -9 daemon i and reap it; restart it on the same
 * ports and state directory with the same settings (its log appended to).
 * 0 or -1. */
int mlt_test_kill9(mlt_test_cluster_t *c, int i);
int mlt_test_restart(mlt_test_cluster_t *c, int i);
/* ---- faults (test_faults.c) ---- */
/* Starts one more worker with the given rank (a replacement for a killed
 * one); returns its index in workers[] (log DIR/worker<index>.log) or -1. */
int mlt_test_start_worker_rank(mlt_test_cluster_t *c, int rank);
/* The same with another worker program (relative to MLT_BUILD_ROOT, e.g.
 * "examples/logreg-worker"), which takes --coordinator and --rank (#13). */
int mlt_test_start_worker_prog(mlt_test_cluster_t *c, const char *prog, int rank);
/* Sends sig to worker index i; SIGKILL also reaps it, and workers[i] becomes
 * 0, which mlt_test_wait_workers and mlt_test_stop skip. 0 or -1. */
int mlt_test_signal_worker(mlt_test_cluster_t *c, int i, int sig);

/* A plain HTTP/1.0 request to 127.0.0.1:port (a read waits 10 s at most); the
 * body in out. Returns the status code, or -1. */
int mlt_test_http(int port, const char *method, const char *path, char *out, size_t len);

/* ---- the job (mltunerctl status) ---- */
/* The job's phase and message into the buffers. 0, or -1 when mltunerctl
 * failed. */
int mlt_test_job_status(mlt_test_cluster_t *c, char *phase, size_t pn, char *msg, size_t mn);
/* Waits until the job is done, failed or stopped (its phase and message),
 * at most bound_s: 0, or -1 when it was not over by then (wedged). */
int mlt_test_wait_job_over(mlt_test_cluster_t *c, double bound_s, char *phase, size_t pn,
                           char *msg, size_t mn);
/* true when daemon i's log (DIR/daemon<i>.log) has a line holding what. */
bool mlt_test_daemon_logged(const mlt_test_cluster_t *c, int i, const char *what);

#endif
