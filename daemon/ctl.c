/* ctl.c - mltunerctl: the command-line client of the coordinator's control
 * endpoint: submit, status, stop, wait, branches, metrics here; watch and
 * decisions (the live views) in ctl_follow.c. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/json.h"
#include "common/log.h"
#include "daemon/ctl.h"
#include "daemon/metrics.h"
#include "proto/wire.h"

const char *endpoint = NULL;
double timeout_s = 5;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mltunerctl [-c ENDPOINT] [--timeout S] [--key FILE] [--server-key FILE]\n"
            "                  COMMAND [ARGS]\n"
            "  submit JOB.conf [--set KEY=VALUE]... [--out DIR] [--wait]\n"
            "                      send a job to the coordinator (--wait: until it ends);\n"
            "                      --out: its output directory, relative to the daemon's\n"
            "                      state_dir (an absolute path only inside state_dir)\n"
            "  status [--json]     the job's phase, branch, epoch, loss, accuracy, tunables,\n"
            "                      and the time spent tuning vs training\n"
            "  watch               a live progress display until the job ends\n"
            "  branches [--json]   the live branches: kind, tunables, clock, memory\n"
            "  decisions [--json] [--follow]\n"
            "                      the tuner's decision log (--follow: as it grows)\n"
            "  metrics             the Prometheus metrics of the job and the shards\n"
            "  stop                stop the running job\n"
            "  wait                wait until the job ends; exit 0 if it finished, 1 if not\n"
            "  keygen NAME [--dir DIR]\n"
            "                      write a CurveZMQ key pair: DIR/NAME.key (secret, 0600) and\n"
            "                      DIR/NAME.pub (for the daemon's curve_authorized_keys)\n"
            "ENDPOINT defaults to $MLTUNER_CONTROL, else tcp://127.0.0.1:7099.\n"
            "--key (else $MLTUNER_KEY): this client's secret key; --server-key (else\n"
            "$MLTUNER_SERVER_KEY, else /etc/mltuner/server.pub): the daemon's public key.\n"
            "Without a key, submit and stop move to the daemon's local control socket\n"
            "(ipc://STATE_DIR/control.sock), which the daemon names when it refuses them.\n");
}

mlt_header_t *request(void *sock, mlt_header_t *h)
{
    static uint64_t rid;
    h->has_request_id = 1;
    h->request_id = ++rid;
    int rc = mlt_wire_send(sock, h, 0);
    if (rc < 0) {
        fprintf(stderr, "mltunerctl: cannot send to %s: %s\n", endpoint, zmq_strerror(-rc));
        return NULL;
    }
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    for (;;) {
        if (zmq_poll(&it, 1, (long)(timeout_s * 1000)) <= 0) {
            fprintf(stderr,
                    "mltunerctl: no answer from %s within %.0f s: is mltunerd (rank 0) running "
                    "there? (its control_bind key)%s\n",
                    endpoint, timeout_s,
                    ctl_have_keys() ? "; does its curve_authorized_keys hold our key, and is "
                                      "--server-key its public key?"
                                    : "; a daemon with curve_key set answers only clients "
                                      "with a key (--key)");
            return NULL;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, 0);
        mlt_header_t *r = NULL;
        char err[256];
        rc = mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, err, sizeof err);
        zmq_msg_close(&m);
        if (rc) {
            fprintf(stderr, "mltunerctl: bad reply from %s: %s\n", endpoint, err);
            return NULL;
        }
        if (r->request_id == h->request_id)
            return r;
        mlt_wire_free(&r);
    }
}

int check_error(mlt_header_t *r)
{
    if (r->type != MLT__MSG_TYPE__MSG_ERROR)
        return 0;
    fprintf(stderr, "mltunerctl: %s\n", r->error ? r->error : "error");
    return -1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "mltunerctl: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = mlt_malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = mlt_realloc(buf, cap *= 2);
        if (n > MLT_MAX_JOB_TEXT)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (n > MLT_MAX_JOB_TEXT) {
        fprintf(stderr, "mltunerctl: %s is larger than %u bytes\n", path, MLT_MAX_JOB_TEXT);
        mlt_free(buf);
        return NULL;
    }
    return buf;
}

mlt_header_t *get_status(void *sock)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_JOB_STATUS);
    mlt_header_t *r = request(sock, &h);
    if (r && (check_error(r) < 0 || !r->job_state)) {
        mlt_wire_free(&r);
        return NULL;
    }
    return r;
}

static void print_status(const Mlt__JobState *s, int json)
{
    const char *name = s->name ? s->name : "";
    if (json) {
        mlt_json_t j;
        mlt_json_begin(&j);
        mlt_json_str(&j, "job", name);
        mlt_json_str(&j, "phase", s->phase);
        mlt_json_fixed(&j, "epoch", s->epoch, 4);
        mlt_json_int(&j, "clock", s->clock);
        mlt_json_fixed(&j, "elapsed", s->elapsed, 3);
        mlt_json_uint(&j, "workers", s->workers);
        mlt_json_uint(&j, "workers_joined", s->workers_joined);
        const struct { /* the metrics a job has (the others are left out) */
            const char *key;
            double v;
        } metric[] = {{"loss", s->loss},
                      {"accuracy", s->val_accuracy},
                      {"test_accuracy", s->test_accuracy},
                      {"val_rmse", s->val_rmse},
                      {"test_rmse", s->test_rmse}};
        for (size_t i = 0; i < sizeof metric / sizeof metric[0]; i++)
            if (isfinite(metric[i].v))
                mlt_json_num(&j, metric[i].key, metric[i].v);
        if (s->tunables) {
            mlt_json_obj(&j, "tunables");
            mlt_json_num(&j, "lr", s->tunables->lr);
            mlt_json_num(&j, "momentum", s->tunables->momentum);
            mlt_json_uint(&j, "batch_size", s->batch_size);
            mlt_json_uint(&j, "staleness", s->tunables->staleness);
            mlt_json_uint(&j, "warmup", s->tunables->warmup);
            mlt_json_end(&j);
        }
        mlt_json_uint(&j, "branch", s->branch);
        mlt_json_uint(&j, "trials", s->trials);
        mlt_json_fixed(&j, "tuning_seconds", s->tuning_seconds, 3);
        mlt_json_fixed(&j, "training_seconds", s->training_seconds, 3);
        if (s->out_dir)
            mlt_json_str(&j, "out_dir", s->out_dir);
        if (s->message)
            mlt_json_str(&j, "message", s->message);
        mlt_json_write(&j, stdout);
        return;
    }
    printf("job:       %s\nphase:     %s\n", *name ? name : "(none)", s->phase);
    if (!*name)
        return;
    printf("workers:   %u of %u joined\n", s->workers_joined, s->workers);
    if (s->max_epochs > 0)
        printf("epoch:     %.2f of %g (clock %lld), %.1f s\n", s->epoch, s->max_epochs,
               (long long)s->clock, s->elapsed);
    else
        printf("epoch:     %.2f (clock %lld), %.1f s\n", s->epoch, (long long)s->clock, s->elapsed);
    if (s->branch)
        printf("branch:    %u (training)\n", s->branch);
    double spent = s->tuning_seconds + s->training_seconds;
    printf("time:      %.1f s tuning (%u trials), %.1f s training", s->tuning_seconds, s->trials,
           s->training_seconds);
    if (spent > 0)
        printf(": %.0f%% tuning", 100 * s->tuning_seconds / spent);
    printf("\n");
    if (isfinite(s->loss))
        printf("loss:      %.4f\n", s->loss);
    if (isfinite(s->val_accuracy))
        printf("accuracy:  %.4f validation, %.4f test\n", s->val_accuracy, s->test_accuracy);
    if (isfinite(s->val_rmse))
        printf("rmse:      %.4f validation, %.4f test\n", s->val_rmse, s->test_rmse);
    if (s->tunables)
        printf("tunables:  lr %g, momentum %g, batch %u, staleness %u\n", (double)s->tunables->lr,
               (double)s->tunables->momentum, s->batch_size, s->tunables->staleness);
    char esc[4 * MLT_MAX_PATH_LEN + 8];
    if (s->out_dir) {
        mlt_log_escape(esc, sizeof esc, s->out_dir);
        printf("output:    %s\n", esc);
    }
    if (s->message) { /* a worker's text: no control bytes to the terminal */
        mlt_log_escape(esc, sizeof esc, s->message);
        printf("message:   %s\n", esc);
    }
}

int is_over(const char *phase)
{
    return strcmp(phase, "done") == 0 || strcmp(phase, "failed") == 0 ||
           strcmp(phase, "stopped") == 0 || strcmp(phase, "idle") == 0;
}

int over_status(const char *phase, const char *message)
{
    char esc[4 * MLT_MAX_ERROR_LEN + 8];
    if (message) { /* a worker's text: no control bytes to the terminal */
        mlt_log_escape(esc, sizeof esc, message);
        printf("%s: %s\n", phase, esc);
    }
    return strcmp(phase, "done") == 0 ? 0 : 1;
}

/* Polls status until the job is over; prints a line per epoch change. */
static int wait_job(void *sock)
{
    double last_test = -1;
    char last_phase[32] = "";
    for (;;) {
        mlt_header_t *r = get_status(sock);
        if (!r)
            return 2;
        const Mlt__JobState *s = r->job_state;
        /* a line when the phase changes or a test result arrives */
        const char *ph = strcmp(s->phase, "testing") == 0 ? "training" : s->phase;
        double test = isfinite(s->test_accuracy) ? s->test_accuracy : s->test_rmse;
        if (strcmp(last_phase, ph) != 0 || (isfinite(test) && test != last_test)) {
            printf("%-10s %7.1f s  epoch %6.2f  trials %3u  loss %8.4f  ", ph, s->elapsed, s->epoch,
                   s->trials, s->loss);
            if (isfinite(s->test_rmse))
                printf("val rmse %.4f  test rmse %.4f", s->val_rmse, s->test_rmse);
            else
                printf("val acc %.4f  test acc %.4f", s->val_accuracy, s->test_accuracy);
            if (s->tunables)
                printf("  lr %.3g m %.3g b %u s %u", (double)s->tunables->lr,
                       (double)s->tunables->momentum, s->batch_size, s->tunables->staleness);
            printf("\n");
            fflush(stdout);
            last_test = test;
            snprintf(last_phase, sizeof last_phase, "%s", ph);
        }
        if (is_over(s->phase)) {
            int rc = over_status(s->phase, s->message);
            mlt_wire_free(&r);
            return rc;
        }
        mlt_wire_free(&r);
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- branches, metrics ----------------------------------------------------------- */

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static int cmd_branches(void *sock, int json)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_STATUS);
    mlt_header_t *r = request(sock, &h);
    if (!r)
        return 2;
    if (check_error(r) < 0) {
        mlt_wire_free(&r);
        return 1;
    }
    uint32_t training = 0;
    mlt_header_t *js = get_status(sock);
    if (js && js->job_state->has_branch && !is_over(js->job_state->phase))
        training = js->job_state->branch;
    mlt_wire_free(&js);
    const Mlt__ServerInfo *si = r->server;
    if (json) {
        mlt_json_t j;
        mlt_json_begin(&j);
        mlt_json_uint(&j, "shards", si ? si->n_servers : 0);
        mlt_json_uint(&j, "memory_allocated", si ? si->memory_allocated : 0);
        mlt_json_uint(&j, "memory_potential", si ? si->memory_potential : 0);
        mlt_json_uint(&j, "memory_limit", si ? si->memory_limit : 0);
        mlt_json_arr(&j, "branches");
        for (size_t i = 0; i < r->n_branches; i++) {
            const Mlt__BranchInfo *b = r->branches[i];
            const Mlt__Tunables *t = b->tunables;
            mlt_json_obj(&j, NULL);
            mlt_json_uint(&j, "id", b->id);
            if (b->has_parent)
                mlt_json_uint(&j, "parent", b->parent);
            else
                mlt_json_null(&j, "parent");
            mlt_json_str(&j, "kind", mlt_branch_kind_name((int)b->kind));
            mlt_json_bool(&j, "training", b->id == training);
            mlt_json_num(&j, "lr", t ? (double)t->lr : 0.0);
            mlt_json_num(&j, "momentum", t ? (double)t->momentum : 0.0);
            mlt_json_uint(&j, "staleness", t ? t->staleness : 0);
            mlt_json_uint(&j, "warmup", t ? t->warmup : 0);
            mlt_json_int(&j, "min_clock", b->min_clock);
            mlt_json_uint(&j, "owned_bytes", b->owned_bytes);
            mlt_json_uint(&j, "shared_bytes", b->shared_bytes);
            mlt_json_bool(&j, "diverged", b->diverged);
            mlt_json_end(&j);
        }
        mlt_json_write(&j, stdout);
        mlt_wire_free(&r);
        return 0;
    }
    if (r->n_branches == 0) {
        printf("no live branches%s\n", si && si->job ? "" : " (no job)");
    } else {
        printf("%8s %8s  %-8s %-9s %10s %8s %5s %10s %10s %10s\n", "branch", "parent", "kind",
               "role", "lr", "momentum", "stale", "clock", "owned MiB", "shared MiB");
        for (size_t i = 0; i < r->n_branches; i++) {
            const Mlt__BranchInfo *b = r->branches[i];
            const Mlt__Tunables *t = b->tunables;
            char parent[16] = "-";
            if (b->has_parent)
                snprintf(parent, sizeof parent, "%u", b->parent);
            printf("%8u %8s  %-8s %-9s %10.4g %8.3g %5u %10lld %10.2f %10.2f%s\n", b->id, parent,
                   mlt_branch_kind_name((int)b->kind), b->id == training ? "training" : "",
                   t ? (double)t->lr : 0.0, t ? (double)t->momentum : 0.0, t ? t->staleness : 0,
                   (long long)b->min_clock, mib(b->owned_bytes), mib(b->shared_bytes),
                   b->diverged ? "  DIVERGED" : "");
        }
    }
    if (si)
        printf("memory: %.2f MiB allocated over %u shard%s, %.2f MiB if every chunk were "
               "private, limit %.0f MiB\n",
               mib(si->memory_allocated), si->n_servers, si->n_servers == 1 ? "" : "s",
               mib(si->memory_potential), mib(si->memory_limit));
    mlt_wire_free(&r);
    return 0;
}

static int cmd_metrics(void *sock)
{
    mlt_header_t h;
    mlt_wire_init(&h, MLT__MSG_TYPE__MSG_METRICS);
    mlt_header_t *r = request(sock, &h);
    if (!r)
        return 2;
    int rc = check_error(r) < 0 ? 1 : 0;
    if (!rc)
        fputs(r->text ? r->text : "", stdout);
    mlt_wire_free(&r);
    return rc;
}

int main(int argc, char **argv)
{
    int i = 1;
    const char *key = NULL, *server_key = NULL;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--connect") == 0) && i + 1 < argc)
            endpoint = argv[++i];
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--server-key") == 0 && i + 1 < argc)
            server_key = argv[++i];
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    if (!endpoint)
        endpoint = getenv("MLTUNER_CONTROL");
    if (!endpoint || !*endpoint)
        endpoint = "tcp://127.0.0.1:7099";
    const char *cmd = argv[i++];
    if (strcmp(cmd, "keygen") == 0)
        return ctl_keygen(argc - i, argv + i);
    if (ctl_keys_init(key, server_key) < 0)
        return 2;
    void *ctx = zmq_ctx_new();
    int status = 2;
    void *sock = ctl_connect(ctx, endpoint);
    if (!sock)
        goto out;
    if (strcmp(cmd, "submit") == 0) {
        const char *path = NULL, *out = NULL;
        int wait = 0;
        char *ov[MLT_MAX_OVERRIDES];
        size_t n_ov = 0;
        for (; i < argc; i++) {
            if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && n_ov < MLT_MAX_OVERRIDES)
                ov[n_ov++] = argv[++i];
            else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
                out = argv[++i];
            else if (strcmp(argv[i], "--wait") == 0)
                wait = 1;
            else if (!path && argv[i][0] != '-')
                path = argv[i];
            else {
                fprintf(stderr, "mltunerctl: submit: unexpected '%s'\n", argv[i]);
                goto out;
            }
        }
        if (!path) {
            fprintf(stderr, "mltunerctl: submit needs a job file\n");
            goto out;
        }
        char *text = read_file(path);
        if (!text)
            goto out;
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_SUBMIT);
        h.job_text = text;
        h.job_path = (char *)path;
        h.out_dir = (char *)out; /* inside the daemon's state_dir; it checks */
        h.n_overrides = n_ov;
        h.overrides = ov;
        mlt_header_t *r = ctl_request_change(ctx, &sock, &h);
        mlt_free(text);
        if (!r)
            goto out;
        if (check_error(r) < 0) {
            mlt_wire_free(&r);
            status = 1;
            goto out;
        }
        mlt_wire_free(&r);
        printf("submitted %s\n", path);
        status = wait ? wait_job(sock) : 0;
    } else if (strcmp(cmd, "status") == 0) {
        int json = i < argc && strcmp(argv[i], "--json") == 0;
        mlt_header_t *r = get_status(sock);
        if (r) {
            print_status(r->job_state, json);
            mlt_wire_free(&r);
            status = 0;
        }
    } else if (strcmp(cmd, "stop") == 0) {
        mlt_header_t h;
        mlt_wire_init(&h, MLT__MSG_TYPE__MSG_JOB_STOP);
        mlt_header_t *r = ctl_request_change(ctx, &sock, &h);
        if (r) {
            status = check_error(r) < 0 ? 1 : 0;
            if (!status)
                printf("stop requested\n");
            mlt_wire_free(&r);
        }
    } else if (strcmp(cmd, "wait") == 0) {
        status = wait_job(sock);
    } else if (strcmp(cmd, "watch") == 0) {
        status = cmd_watch(sock);
    } else if (strcmp(cmd, "branches") == 0) {
        status = cmd_branches(sock, i < argc && strcmp(argv[i], "--json") == 0);
    } else if (strcmp(cmd, "decisions") == 0) {
        status = cmd_decisions(sock, argc - i, argv + i);
    } else if (strcmp(cmd, "metrics") == 0) {
        status = cmd_metrics(sock);
    } else {
        fprintf(stderr, "mltunerctl: unknown command '%s'\n", cmd);
        usage(stderr);
    }
out:
    if (sock)
        zmq_close(sock);
    zmq_ctx_term(ctx);
    return status;
}
