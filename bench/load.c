/* load.c - the SSP bound under load: N client processes x C clocks at
 * staleness S against 2 real mltunerd shards on loopback.
 *
 *   load [CLIENTS [CLOCKS [STALENESS]]]      (defaults 8 10000 3)
 *
 * Table "count" has one slot per client and each push adds exactly 1 to the
 * pusher's slot (plain SGD, lr 1, gradient -1), so slot v of a pull is the
 * number of v's pushes the pull saw. A pull at clock c under staleness s must
 * see at least c - s from every client; every shortfall is a violation. A
 * second table of 4096 floats gives each clock some data to move. After the
 * clients finish, one pull at the last clock must show every push (nothing
 * lost). A client that has not finished within the deadline (a hang) fails the
 * run. Prints a table and a last line of key=value figures. Exit 1 on any
 * violation, loss or hang. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "tests/integration/harness.h"
#include "client/mltuner.h"

#define MAX_CLIENTS 16
#define DATA_SIZE 4096
#define DEADLINE_S 600.0

static mlt_test_cluster_t cl;
static mlt_table_def_t tables[2] = {{"data", DATA_SIZE}, {"count", 0}};

/* One client: returns violations (capped at 100) or 101 on an error. */
static int run_client(int w, int n, int64_t clocks, uint32_t s)
{
    mlt_job_def_t job = {"load", (uint32_t)n, "sgd", tables, 2, false};
    char err[512];
    mlt_client_t *c = mlt_client_new(cl.eps, (uint32_t)cl.n, (uint32_t)w, err, sizeof err);
    if (!c || mlt_client_register(c, &job) < 0) {
        fprintf(stderr, "client %d: %s\n", w, c ? mlt_client_error(c) : err);
        return 101;
    }
    float *data = calloc(DATA_SIZE, sizeof *data), *cnt = calloc((size_t)n, sizeof *cnt);
    float *g0 = calloc(DATA_SIZE, sizeof *g0), *g1 = calloc((size_t)n, sizeof *g1);
    float *dst[2] = {data, cnt};
    g1[w] = -1.0f;
    int bad = 0;
    for (int64_t k = 0; k < clocks; k++) {
        if (mlt_pull(c, 1, k, dst) < 0 || mlt_push(c, 1, 0, g0) < 0 || mlt_push(c, 1, 1, g1) < 0 ||
            mlt_clock(c, 1, k + 1) < 0) {
            fprintf(stderr, "client %d at clock %lld: %s\n", w, (long long)k, mlt_client_error(c));
            bad = 101;
            break;
        }
        for (int v = 0; v < n; v++)
            if (cnt[v] < (float)(k - (int64_t)s) && bad < 100) {
                fprintf(stderr, "client %d: SSP violated at clock %lld: %g pushes of client %d\n",
                        w, (long long)k, (double)cnt[v], v);
                bad++;
            }
    }
    free(data);
    free(cnt);
    free(g0);
    free(g1);
    mlt_client_destroy(&c);
    return bad;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 8;
    int64_t clocks = argc > 2 ? atoll(argv[2]) : 10000;
    int s = argc > 3 ? atoi(argv[3]) : 3;
    if (n < 1 || n > MAX_CLIENTS || clocks < 1 || s < 0) {
        fprintf(stderr, "usage: load [CLIENTS 1..%d [CLOCKS [STALENESS]]]\n", MAX_CLIENTS);
        return 2;
    }
    tables[1].size = (uint64_t)n;
    if (mlt_test_start(&cl, 2, NULL) < 0)
        return 1;
    char err[512];
    mlt_job_def_t job = {"load", (uint32_t)n, "sgd", tables, 2, false};
    mlt_client_t *c = mlt_client_new(cl.eps, (uint32_t)cl.n, 0, err, sizeof err);
    mlt_tunables_def_t t = mlt_tunables_unset();
    t.lr = 1.0f;
    t.momentum = 0.0f;
    t.staleness = s;
    if (!c || mlt_client_register(c, &job) < 0 || mlt_branch_create(c, 1, MLT_BRANCH_TRAIN, &t) < 0) {
        fprintf(stderr, "load: set-up: %s\n", c ? mlt_client_error(c) : err);
        mlt_test_stop(&cl);
        return 1;
    }
    double t0 = mlt_time_mono();
    pid_t pids[MAX_CLIENTS];
    for (int w = 0; w < n; w++) {
        pids[w] = fork();
        if (pids[w] == 0)
            _exit(run_client(w, n, clocks, (uint32_t)s));
    }
    int violations = 0, errors = 0, hung = 0, left = n;
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            left--;
            int code = WIFEXITED(st) ? WEXITSTATUS(st) : 101;
            if (code > 100)
                errors++;
            else
                violations += code;
            continue;
        }
        if (mlt_time_mono() - t0 > DEADLINE_S) {
            for (int w = 0; w < n; w++)
                kill(pids[w], SIGKILL);
            while (waitpid(-1, NULL, 0) > 0)
                ;
            hung = left;
            break;
        }
        usleep(20000);
    }
    double secs = mlt_time_mono() - t0;
    /* nothing lost: a pull at the last clock sees every client's pushes */
    float *data = calloc(DATA_SIZE, sizeof *data), *cnt = calloc((size_t)n, sizeof *cnt);
    float *dst[2] = {data, cnt};
    int lost = 0;
    if (!hung && !errors) {
        if (mlt_pull(c, 1, clocks + s, dst) < 0) {
            fprintf(stderr, "load: final pull: %s\n", mlt_client_error(c));
            errors++;
        } else {
            for (int v = 0; v < n; v++)
                if (cnt[v] != (float)clocks)
                    lost++;
        }
    }
    free(data);
    free(cnt);
    mlt_client_destroy(&c);
    int stop_bad = mlt_test_stop(&cl);
    printf("| clients | clocks each | staleness | seconds | clocks/s (all) | violations | lost | "
           "hung | errors |\n|---|---|---|---|---|---|---|---|---|\n");
    printf("| %d | %lld | %d | %.1f | %.0f | %d | %d | %d | %d |\n", n, (long long)clocks, s, secs,
           (double)n * (double)clocks / secs, violations, lost, hung, errors + stop_bad);
    printf("clients=%d clocks=%lld staleness=%d seconds=%.1f violations=%d lost=%d hung=%d "
           "errors=%d\n",
           n, (long long)clocks, s, secs, violations, lost, hung, errors + stop_bad);
    return violations || lost || hung || errors || stop_bad ? 1 : 0;
}
