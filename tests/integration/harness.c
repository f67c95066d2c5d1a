/* harness.c - see harness.h. */
#include "tests/integration/harness.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ftw.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for
 * port 0), or 0. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- process lifetime ----------------------------------------------------
 * Every process the harness starts dies with the process that started it,
 * whatever ends that one: a failed Check assertion (the forked test exits), an
 * abort, a Check timeout's SIGKILL or a normal exit without mlt_test_stop.
 * Two mechanisms: the child asks the kernel for SIGKILL when its parent
 * thread ends (PR_SET_PDEATHSIG; so start processes from the thread that
 * lives as long as the test, as every test here does), and an atexit handler
 * SIGKILLs and reaps whatever is still listed. tests/integration/
 * test_harness.c proves it. */

#define MAX_LIVE (MLT_TEST_MAX_DAEMONS * 4 + MLT_TEST_MAX_WORKERS * 4)

static pid_t live[MAX_LIVE]; /* started and not yet reaped; 0 = free slot */
static pid_t live_owner;     /* the process that started them */

static void kill_live(void)
{
    if (getpid() != live_owner) /* a forked copy of the test: not its children */
        return;
    for (int i = 0; i < MAX_LIVE; i++) {
        /* 0: still running; anything else: reaped now, or already reaped by
         * the test itself (then the pid may be someone else's: no kill) */
        if (live[i] > 0 && waitpid(live[i], NULL, WNOHANG) == 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
        }
        live[i] = 0;
    }
}

static void live_add(pid_t pid)
{
    if (live_owner != getpid()) {
        if (live_owner == 0)
            atexit(kill_live);
        memset(live, 0, sizeof live); /* a forked copy's list is not its own */
        live_owner = getpid();
    }
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
    /* full: PR_SET_PDEATHSIG still covers it */
}

/* after waitpid reaped pid */
static void live_remove(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == pid)
            live[i] = 0;
}

/* In a child just forked from parent: die when the parent does. If the
 * parent is already gone (it died before prctl), exit at once. */
static void die_with_parent(pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
}

/* fork() for the harness: the child dies with the caller, the parent lists it. */
static pid_t fork_child(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        die_with_parent(parent);
    else if (pid > 0)
        live_add(pid);
    return pid;
}

static int start_daemons(mlt_test_cluster_t *c, int n, const char *const *extra, bool listed);

int mlt_test_start(mlt_test_cluster_t *c, int n, const char *const *extra)
{
    return start_daemons(c, n, extra, false);
}

int mlt_test_start_listed(mlt_test_cluster_t *c, int n, const char *const *extra)
{
    return start_daemons(c, n, extra, true);
}

/* Forks daemon i of n (its log DIR/daemonI.log, appended to when again). */
static pid_t spawn_daemon(mlt_test_cluster_t *c, const char *bin, int i, int n, const char *bind,
                          const char *control_bind, const char *servers, const char *metrics,
                          const char *const *extra, bool again)
{
    char rank[32], epf[320], log[320], sdir[300], ctlf[360], nserv[32], cb[160];
    snprintf(nserv, sizeof nserv, "n_servers=%d", n);
    snprintf(rank, sizeof rank, "%d", i);
    snprintf(epf, sizeof epf, "%s/endpoint%d", c->dir, i);
    snprintf(log, sizeof log, "%s/daemon%d.log", c->dir, i);
    snprintf(sdir, sizeof sdir, "state_dir=%s", c->dir);
    snprintf(ctlf, sizeof ctlf, "control_endpoint_file=%s/control%d", c->dir, i);
    snprintf(cb, sizeof cb, "control_bind=%s", control_bind);
    pid_t pid = fork_child();
    if (pid < 0) {
        perror("harness: fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | (again ? O_APPEND : O_TRUNC), 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[64];
        int a = 0;
        argv[a++] = bin;
        argv[a++] = "--rank";
        argv[a++] = rank;
        argv[a++] = "--set";
        argv[a++] = nserv;
        argv[a++] = "--bind";
        argv[a++] = bind;
        if (metrics) {
            argv[a++] = "--set";
            argv[a++] = servers;
            argv[a++] = "--set";
            argv[a++] = metrics;
        }
        argv[a++] = "--endpoint-file";
        argv[a++] = epf;
        argv[a++] = "--set";
        argv[a++] = sdir;
        argv[a++] = "--set";
        argv[a++] = cb;
        argv[a++] = "--set";
        argv[a++] = ctlf;
        for (int k = 0; extra && extra[k] && a < 60; k++) {
            argv[a++] = "--set";
            argv[a++] = extra[k];
        }
        argv[a] = NULL;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* listed: every daemon gets the servers list (fixed ports picked here), so
 * the coordinator knows all n shards; else each binds port 0 alone. */
static int start_daemons(mlt_test_cluster_t *c, int n, const char *const *extra, bool listed)
{
    memset(c, 0, sizeof *c);
    const char *root = getenv("MLT_BUILD_ROOT");
    char bin[512];
    snprintf(bin, sizeof bin, "%s/daemon/mltunerd", root ? root : "build");
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "harness: %s is not executable (set MLT_BUILD_ROOT)\n", bin);
        return -1;
    }
    snprintf(c->dir, sizeof c->dir, "/tmp/mlt-test-XXXXXX");
    if (!mkdtemp(c->dir)) {
        perror("harness: mkdtemp");
        return -1;
    }
    char servers[MLT_TEST_MAX_DAEMONS * 32 + 16] = "servers=";
    char binds[MLT_TEST_MAX_DAEMONS][32], metrics[MLT_TEST_MAX_DAEMONS][64];
    for (int i = 0; i < n; i++) {
        snprintf(binds[i], sizeof binds[i], "tcp://127.0.0.1:0");
        if (!listed)
            continue;
        int port = free_port();
        if (!port) {
            perror("harness: no free port");
            return -1;
        }
        snprintf(binds[i], sizeof binds[i], "tcp://127.0.0.1:%d", port);
        c->metrics_port[i] = free_port();
        snprintf(metrics[i], sizeof metrics[i], "metrics_listen=127.0.0.1:%d", c->metrics_port[i]);
        snprintf(servers + strlen(servers), sizeof servers - strlen(servers), "%s%s",
                 i ? "," : "", binds[i]);
    }
    c->listed = listed;
    c->extra = extra;
    for (int i = 0; i < n; i++) {
        pid_t pid = spawn_daemon(c, bin, i, n, binds[i], "tcp://127.0.0.1:0", servers,
                                 listed ? metrics[i] : NULL, extra, false);
        if (pid < 0)
            return -1;
        c->pids[i] = pid;
        c->n = i + 1;
    }
    for (int i = 0; i < n; i++) {
        char epf[320];
        snprintf(epf, sizeof epf, "%s/endpoint%d", c->dir, i);
        for (int t = 0; t < 1000; t++) {
            FILE *f = fopen(epf, "r");
            if (f) {
                if (fgets(c->endpoints[i], sizeof c->endpoints[i], f))
                    c->endpoints[i][strcspn(c->endpoints[i], "\n")] = '\0';
                fclose(f);
                break;
            }
            if (!mlt_test_alive(c, i)) {
                fprintf(stderr, "harness: daemon %d exited at start; its log (%s/daemon%d.log):\n",
                        i, c->dir, i);
                char log[400], buf[512];
                snprintf(log, sizeof log, "%s/daemon%d.log", c->dir, i);
                FILE *lf = fopen(log, "r");
                while (lf && fgets(buf, sizeof buf, lf))
                    fprintf(stderr, "  %s", buf);
                if (lf)
                    fclose(lf);
                return -1;
            }
            sleep_ms(10);
        }
        if (!c->endpoints[i][0]) {
            fprintf(stderr, "harness: daemon %d wrote no endpoint within 10 s\n", i);
            return -1;
        }
        c->eps[i] = c->endpoints[i];
    }
    char ctl[320];
    snprintf(ctl, sizeof ctl, "%s/control0", c->dir);
    FILE *f = fopen(ctl, "r");
    if (f) {
        if (fgets(c->control, sizeof c->control, f))
            c->control[strcspn(c->control, "\n")] = '\0';
        fclose(f);
    }
    return 0;
}

static const char *build_root(void)
{
    const char *root = getenv("MLT_BUILD_ROOT");
    return root ? root : "build";
}

int mlt_test_start_workers(mlt_test_cluster_t *c, int n)
{
    if (!c->control[0] || c->n_workers + n > MLT_TEST_MAX_WORKERS) {
        fprintf(stderr, "harness: no control endpoint, or too many workers\n");
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (mlt_test_start_worker_rank(c, i) < 0)
            return -1;
    return 0;
}

int mlt_test_wait_workers(mlt_test_cluster_t *c, double timeout_s)
{
    int bad = 0;
    long polls = (long)(timeout_s * 100);
    for (int i = 0; i < c->n_workers; i++) {
        int st = 0, done = 0;
        if (c->workers[i] <= 0) /* killed by mlt_test_signal_worker */
            continue;
        for (long t = 0; t < polls && !done; t++) {
            if (waitpid(c->workers[i], &st, WNOHANG) == c->workers[i]) {
                live_remove(c->workers[i]);
                done = 1;
            } else
                sleep_ms(10);
        }
        if (!done) {
            fprintf(stderr, "harness: worker %d still running; killing it (log %s/worker%d.log)\n",
                    i, c->dir, i);
            kill(c->workers[i], SIGKILL);
            waitpid(c->workers[i], &st, 0);
            live_remove(c->workers[i]);
            bad++;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "harness: worker %d ended with status %d (log %s/worker%d.log)\n", i,
                    st, c->dir, i);
            bad++;
        }
        polls = 100; /* the others had the same time to finish */
    }
    c->n_workers = 0;
    return bad;
}

int mlt_test_submit(const mlt_test_cluster_t *c, const char *conf, const char *out_dir,
                    const char *const *sets, const char *const *more, char *log, size_t len)
{
    enum { MAX_SETS = 48 };
    const char *argv[8 + 2 * MAX_SETS] = {"daemon/mltunerctl", "-c", c->control, "submit", conf,
                                          "--out", out_dir};
    int n = 7;
    const char *const *lists[2] = {sets, more};
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l] && lists[l][i]; i++) {
            if (n >= 7 + 2 * MAX_SETS) {
                snprintf(log, len, "mlt_test_submit: more than %d --set values", MAX_SETS);
                return -1;
            }
            argv[n++] = "--set";
            argv[n++] = lists[l][i];
        }
    argv[n] = NULL;
    return mlt_test_run(argv, log, len);
}

int mlt_test_run(const char *const *argv, char *out, size_t outlen)
{
    char bin[512];
    snprintf(bin, sizeof bin, "%s/%s", build_root(), argv[0]);
    int pfd[2];
    if (pipe(pfd) < 0)
        return -1;
    pid_t pid = fork_child();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t got;
    char sink[256];
    while ((got = read(pfd[0], n + 1 < outlen ? out + n : sink,
                       n + 1 < outlen ? outlen - n - 1 : sizeof sink)) > 0)
        if (n + 1 < outlen)
            n += (size_t)got;
    close(pfd[0]);
    if (outlen)
        out[n < outlen ? n : outlen - 1] = '\0';
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    live_remove(pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int mlt_test_alive(mlt_test_cluster_t *c, int i)
{
    int st;
    if (c->pids[i] <= 0)
        return 0;
    pid_t r = waitpid(c->pids[i], &st, WNOHANG);
    if (r == c->pids[i])
        live_remove(r);
    return r == 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int mlt_test_stop(mlt_test_cluster_t *c)
{
    int bad = 0;
    for (int i = 0; i < c->n_workers; i++) { /* workers left over by a failed test */
        if (c->workers[i] <= 0)
            continue;
        kill(c->workers[i], SIGCONT); /* one a test stopped */
        kill(c->workers[i], SIGKILL);
        waitpid(c->workers[i], NULL, 0);
        live_remove(c->workers[i]);
    }
    c->n_workers = 0;
    for (int i = 0; i < c->n; i++)
        if (c->pids[i] > 0)
            kill(c->pids[i], SIGTERM);
    for (int i = 0; i < c->n; i++) {
        if (c->pids[i] <= 0)
            continue;
        int st = 0, done = 0;
        for (int t = 0; t < 2000 && !done; t++) {
            pid_t r = waitpid(c->pids[i], &st, WNOHANG);
            if (r == c->pids[i]) {
                live_remove(r);
                done = 1;
            } else
                sleep_ms(10);
        }
        if (!done) {
            fprintf(stderr, "harness: daemon %d ignored SIGTERM for 20 s; killing it\n", i);
            kill(c->pids[i], SIGKILL);
            waitpid(c->pids[i], &st, 0);
            live_remove(c->pids[i]);
            bad++;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "harness: daemon %d ended with %s %d; log: %s/daemon%d.log\n", i,
                    WIFEXITED(st) ? "exit status" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), c->dir, i);
            bad++;
        }
        c->pids[i] = 0;
    }
    /* a clean stop removes the directory; a failed test never gets here, so
     * its logs stay (MLT_TEST_KEEP=1 keeps every run's) */
    if (!bad && c->dir[0] && !getenv("MLT_TEST_KEEP"))
        nftw(c->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return bad;
}

/* ---- daemon faults (#12, test_checkpoint) ------------------------------------- */

int mlt_test_kill9(mlt_test_cluster_t *c, int i)
{
    if (i < 0 || i >= c->n || c->pids[i] <= 0)
        return -1;
    kill(c->pids[i], SIGKILL);
    waitpid(c->pids[i], NULL, 0);
    live_remove(c->pids[i]);
    c->pids[i] = 0;
    return 0;
}

int mlt_test_restart(mlt_test_cluster_t *c, int i)
{
    char bin[512], epf[320], servers[MLT_TEST_MAX_DAEMONS * 160 + 16] = "servers=";
    char metrics[64];
    snprintf(bin, sizeof bin, "%s/daemon/mltunerd", build_root());
    snprintf(epf, sizeof epf, "%s/endpoint%d", c->dir, i);
    if (i < 0 || i >= c->n || c->pids[i] > 0)
        return -1;
    for (int k = 0; k < c->n; k++)
        snprintf(servers + strlen(servers), sizeof servers - strlen(servers), "%s%s", k ? "," : "",
                 c->endpoints[k]);
    snprintf(metrics, sizeof metrics, "metrics_listen=127.0.0.1:%d", c->metrics_port[i]);
    unlink(epf);
    /* the ports it had: the workers and the other daemons reconnect to them */
    for (int tries = 0; tries < 50; tries++) {
        pid_t pid = spawn_daemon(c, bin, i, c->n, c->endpoints[i],
                                 i == 0 && c->control[0] ? c->control : "tcp://127.0.0.1:0",
                                 servers, c->listed ? metrics : NULL, c->extra, true);
        if (pid < 0)
            return -1;
        c->pids[i] = pid;
        for (int t = 0; t < 1000; t++) {
            if (access(epf, R_OK) == 0)
                return 0;
            if (!mlt_test_alive(c, i))
                break;
            sleep_ms(10);
        }
        if (mlt_test_alive(c, i)) {
            fprintf(stderr, "harness: restarted daemon %d wrote no endpoint within 10 s\n", i);
            return -1;
        }
        waitpid(pid, NULL, 0);
        live_remove(pid);
        c->pids[i] = 0;
        sleep_ms(100); /* the port may be held a moment longer */
    }
    fprintf(stderr, "harness: daemon %d did not restart (see %s/daemon%d.log)\n", i, c->dir, i);
    return -1;
}
/* ---- faults ---- */

int mlt_test_start_worker_rank(mlt_test_cluster_t *c, int rank)
{
    return mlt_test_start_worker_prog(c, "worker/mltuner-worker", rank);
}

int mlt_test_start_worker_prog(mlt_test_cluster_t *c, const char *prog, int rank)
{
    char bin[512], rs[16], log[320];
    snprintf(bin, sizeof bin, "%s/%s", build_root(), prog);
    if (!c->control[0] || c->n_workers >= MLT_TEST_MAX_WORKERS)
        return -1;
    int i = c->n_workers;
    snprintf(rs, sizeof rs, "%d", rank);
    snprintf(log, sizeof log, "%s/worker%d.log", c->dir, i);
    pid_t pid = fork_child();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(bin, bin, "--coordinator", c->control, "--rank", rs, (char *)NULL);
        _exit(127);
    }
    c->workers[c->n_workers++] = pid;
    return i;
}

int mlt_test_signal_worker(mlt_test_cluster_t *c, int i, int sig)
{
    if (i < 0 || i >= c->n_workers || c->workers[i] <= 0 || kill(c->workers[i], sig) < 0)
        return -1;
    if (sig == SIGKILL) {
        waitpid(c->workers[i], NULL, 0);
        live_remove(c->workers[i]);
        c->workers[i] = 0;
    }
    return 0;
}

/* ---- HTTP ---- */

int mlt_test_http(int port, const char *method, const char *path, char *out, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0}; /* a read that long is a hang */
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    static char resp[1 << 17];
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof resp && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    resp[got] = 0;
    int code = -1;
    if (sscanf(resp, "HTTP/1.%*d %d", &code) != 1)
        return -1;
    const char *body = strstr(resp, "\r\n\r\n");
    snprintf(out, len, "%s", body ? body + 4 : "");
    return code;
}

/* ---- the job, as mltunerctl shows it ---- */

/* The value after `label` in mltunerctl status's text, up to one of `end`, into
 * out (left as it is when the label is missing). */
static void status_field(const char *text, const char *label, const char *end, char *out,
                         size_t len)
{
    const char *p = strstr(text, label);
    if (!p)
        return;
    p += strlen(label);
    while (*p == ' ')
        p++;
    snprintf(out, len, "%.*s", (int)strcspn(p, end), p);
}

int mlt_test_job_status(mlt_test_cluster_t *c, char *phase, size_t pn, char *msg, size_t mn)
{
    char out[4096];
    const char *argv[] = {"daemon/mltunerctl", "-c", c->control, "status", NULL};
    phase[0] = msg[0] = '\0';
    if (mlt_test_run(argv, out, sizeof out) != 0)
        return -1;
    status_field(out, "phase:", " \n", phase, pn);
    status_field(out, "message:", "\n", msg, mn);
    return 0;
}

int mlt_test_wait_job_over(mlt_test_cluster_t *c, double bound_s, char *phase, size_t pn,
                           char *msg, size_t mn)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (mlt_test_job_status(c, phase, pn, msg, mn) == 0 &&
            (!strcmp(phase, "done") || !strcmp(phase, "failed") || !strcmp(phase, "stopped")))
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) * 1e-9 > bound_s)
            return -1;
        sleep_ms(200);
    }
}

bool mlt_test_daemon_logged(const mlt_test_cluster_t *c, int i, const char *what)
{
    char path[400], line[4096];
    snprintf(path, sizeof path, "%s/daemon%d.log", c->dir, i);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return found;
}
