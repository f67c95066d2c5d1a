/* test_security.c - who gets in, against the real mltunerd (DESIGN §8):
 *  - a daemon with curve_key set, bound to 0.0.0.0 (allowed: it has keys):
 *    a client without a key, and one whose key is not in the allow-list, get
 *    no reply from the shard or the control endpoint, and the daemon logs a
 *    line for each; an allow-listed key gets its replies, status and stop;
 *  - a non-loopback bind, control_bind or metrics_listen without keys makes
 *    mltunerd refuse to start, naming the key and endpoint; with
 *    allow_insecure = true it starts;
 *  - a secret key readable by others and a bad allow-list line are refused
 *    at start, naming the file (and line);
 *  - without keys, SUBMIT and JOB_STOP over TCP are refused (EACCES) with the
 *    local control socket named; that socket is mode 0600 and mltunerctl
 *    moves there on its own. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "proto/wire.h"
#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"
#include "client/mltuner.h"

static char keydir[64];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The one key line of a key file (40 characters) into out (41 bytes). */
static void read_key(const char *path, char *out)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f, "%s", path);
    char line[256];
    out[0] = 0;
    while (fgets(line, sizeof line, f))
        if (line[0] != '#' && strlen(line) >= 40) {
            memcpy(out, line, 40);
            out[40] = 0;
        }
    fclose(f);
    ck_assert_int_eq((int)strlen(out), 40);
}

/* Makes keydir with server, client and stranger pairs and an allow-list
 * holding the client only. */
static void make_keys(void)
{
    snprintf(keydir, sizeof keydir, "/tmp/mlt-keys-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(keydir));
    const char *names[] = {"server", "client", "stranger"};
    char out[512];
    for (int i = 0; i < 3; i++) {
        const char *argv[] = {"daemon/mltunerctl", "keygen", names[i], "--dir", keydir, NULL};
        ck_assert_msg(mlt_test_run(argv, out, sizeof out) == 0, "keygen: %s", out);
    }
    char path[128], pub[41];
    snprintf(path, sizeof path, "%s/server.key", keydir);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/client.pub", keydir);
    read_key(path, pub);
    snprintf(path, sizeof path, "%s/authorized_keys", keydir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# the job's workers\n%s worker-1\n", pub);
    fclose(f);
}

static void remove_keys(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
    ck_assert_int_eq(system(cmd), 0);
}

/* True once the file at path holds needle (waits up to 5 s: the daemon logs
 * from its own threads). */
static int log_has(const char *path, const char *needle)
{
    for (int t = 0; t < 50; t++) {
        FILE *f = fopen(path, "r");
        if (f) {
            static char buf[1 << 16];
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = 0;
            if (strstr(buf, needle))
                return 1;
        }
        sleep_ms(100);
    }
    return 0;
}

/* Sends one request of type to ep as a plain DEALER (keys NULL) or a CURVE
 * client with the named pair; returns 1 if any reply came within 1.5 s, and
 * the reply's error code in *code (0 for a non-error). */
static int ask(const char *ep, const char *pair, Mlt__MsgType type, int *code, char *local,
               size_t local_len)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (pair) {
        char path[128], sec[41], pub[41], srv[41];
        snprintf(path, sizeof path, "%s/%s.key", keydir, pair);
        read_key(path, sec);
        snprintf(path, sizeof path, "%s/%s.pub", keydir, pair);
        read_key(path, pub);
        snprintf(path, sizeof path, "%s/server.pub", keydir);
        read_key(path, srv);
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, srv, 41);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 41);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 41);
    }
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    mlt_header_t h;
    mlt_wire_init(&h, type);
    h.has_request_id = 1;
    h.request_id = 7;
    ck_assert_int_eq(mlt_wire_send(s, &h, 0), 0);
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    int got = zmq_poll(&it, 1, 1500) > 0;
    if (got && code) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, s, 0);
        mlt_header_t *r = NULL;
        char err[256];
        ck_assert_int_eq(mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, err, sizeof err),
                         0);
        *code = r->type == MLT__MSG_TYPE__MSG_ERROR ? r->error_code : 0;
        if (local)
            snprintf(local, local_len, "%s", r->local_control ? r->local_control : "");
        mlt_wire_free(&r);
        zmq_msg_close(&m);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return got;
}

START_TEST(test_curve_daemon)
{
    make_keys();
    char key[128], allow[128];
    snprintf(key, sizeof key, "curve_key=%s/server.key", keydir);
    snprintf(allow, sizeof allow, "curve_authorized_keys=%s/authorized_keys", keydir);
    /* beyond loopback, and no allow_insecure: the keys are what permit it */
    const char *extra[] = {key, allow, "bind=tcp://0.0.0.0:0", "control_bind=tcp://0.0.0.0:0",
                           NULL};
    mlt_test_cluster_t cl;
    ck_assert_int_eq(mlt_test_start(&cl, 1, extra), 0);
    char logp[320];
    snprintf(logp, sizeof logp, "%s/daemon0.log", cl.dir);
    ck_assert(log_has(logp, "CurveZMQ on"));

    /* no key at all: nothing comes back, from the shard or the control endpoint */
    ck_assert_int_eq(ask(cl.endpoints[0], NULL, MLT__MSG_TYPE__MSG_HELLO, NULL, NULL, 0), 0);
    ck_assert_int_eq(ask(cl.control, NULL, MLT__MSG_TYPE__MSG_JOB_STATUS, NULL, NULL, 0), 0);
    ck_assert_msg(log_has(logp, "shard: refused a peer on"),
                  "no log line for a keyless shard peer");
    ck_assert_msg(log_has(logp, "control: refused a peer on"),
                  "no log line for a keyless control peer");

    /* a key the allow-list does not hold: nothing either, and its key is logged */
    ck_assert_int_eq(ask(cl.endpoints[0], "stranger", MLT__MSG_TYPE__MSG_HELLO, NULL, NULL, 0), 0);
    ck_assert_int_eq(ask(cl.control, "stranger", MLT__MSG_TYPE__MSG_JOB_STOP, NULL, NULL, 0), 0);
    char path[128], stranger[41];
    snprintf(path, sizeof path, "%s/stranger.pub", keydir);
    read_key(path, stranger);
    char needle[160];
    snprintf(needle, sizeof needle, "with CurveZMQ key %s: not in the allow-list", stranger);
    ck_assert_msg(log_has(logp, needle), "no log line naming the refused key");

    /* the allow-listed key gets its answers: shards through libmltuner ... */
    int code = -1;
    ck_assert_int_eq(ask(cl.endpoints[0], "client", MLT__MSG_TYPE__MSG_HELLO, &code, NULL, 0), 1);
    ck_assert_int_eq(code, 0);
    mlt_client_keys_t ck;
    snprintf(path, sizeof path, "%s/client.key", keydir);
    read_key(path, ck.secret_key);
    snprintf(path, sizeof path, "%s/client.pub", keydir);
    read_key(path, ck.public_key);
    snprintf(path, sizeof path, "%s/server.pub", keydir);
    read_key(path, ck.server_key);
    char err[256];
    mlt_client_t *c = mlt_client_new_keys(cl.eps, 1, 0, &ck, err, sizeof err);
    ck_assert_msg(c != NULL, "an authorised client was refused: %s", err);
    mlt_server_status_t st;
    ck_assert_int_eq(mlt_client_status(c, 0, &st), 0);
    mlt_server_status_free(&st);
    mlt_client_destroy(&c);
    /* ... and the control endpoint through mltunerctl, stop included (the
     * coordinator's EACCES would say "need an authorised key"; this says there
     * is no job, so the key was accepted for a state-changing command) */
    char kf[128], sf[128], out[2048];
    snprintf(kf, sizeof kf, "%s/client.key", keydir);
    snprintf(sf, sizeof sf, "%s/server.pub", keydir);
    const char *st_argv[] = {"daemon/mltunerctl", "-c", cl.control, "--key", kf,
                             "--server-key",      sf,   "status",   NULL};
    ck_assert_msg(mlt_test_run(st_argv, out, sizeof out) == 0, "status: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "idle"));
    const char *stop_argv[] = {"daemon/mltunerctl", "-c", cl.control, "--key", kf,
                               "--server-key",      sf,   "stop",     NULL};
    mlt_test_run(stop_argv, out, sizeof out);
    ck_assert_msg(strstr(out, "no job is running"), "stop with an authorised key: %s", out);
    /* mltunerctl without a key gets no answer */
    const char *nokey_argv[] = {
        "daemon/mltunerctl", "-c", cl.control, "--timeout", "1", "status", NULL};
    ck_assert_int_ne(mlt_test_run(nokey_argv, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "no answer"));
    ck_assert_int_eq(mlt_test_alive(&cl, 0), 1);
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
    remove_keys();
}
END_TEST

/* Runs mltunerd with these --set values; expects it to refuse to start (exit
 * 2) with a message holding want. */
static void expect_refused(const char *a, const char *b, const char *c, const char *want)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = "daemon/mltunerd";
    argv[n++] = "--set";
    argv[n++] = "state_dir=/tmp";
    const char *sets[] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (sets[i]) {
            argv[n++] = "--set";
            argv[n++] = sets[i];
        }
    argv[n] = NULL;
    char out[2048];
    int rc = mlt_test_run(argv, out, sizeof out);
    ck_assert_msg(rc == 2, "mltunerd %s %s %s exited %d: %s", a, b ? b : "", c ? c : "", rc, out);
    ck_assert_msg(strstr(out, want), "expected '%s' in: %s", want, out);
}

START_TEST(test_insecure_binds)
{
    expect_refused("bind=tcp://0.0.0.0:0", "control_bind=tcp://127.0.0.1:0", NULL,
                   "refusing bind = tcp://0.0.0.0:0 without CurveZMQ keys");
    expect_refused("bind=tcp://127.0.0.1:0", "control_bind=tcp://0.0.0.0:0", NULL,
                   "refusing control_bind = tcp://0.0.0.0:0 without CurveZMQ keys");
    expect_refused("bind=tcp://127.0.0.1:0", "control_bind=tcp://127.0.0.1:0",
                   "metrics_listen=*:19108", "refusing metrics_listen = *:19108");
    expect_refused("bind=tcp://127.0.0.1:0", "control_bind=tcp://127.0.0.1:0",
                   "metrics_listen=0.0.0.0:19108", "refusing metrics_listen = 0.0.0.0:19108");
    /* with allow_insecure all three start */
    const char *extra[] = {"bind=tcp://0.0.0.0:0", "control_bind=tcp://0.0.0.0:0",
                           "metrics_listen=0.0.0.0:0", "allow_insecure=true", NULL};
    /* metrics_listen needs a port: one the kernel says is free now */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    char metrics[64];
    snprintf(metrics, sizeof metrics, "metrics_listen=0.0.0.0:%d", ntohs(sa.sin_port));
    extra[2] = metrics;
    mlt_test_cluster_t cl;
    ck_assert_int_eq(mlt_test_start(&cl, 1, extra), 0);
    ck_assert_int_eq(mlt_test_alive(&cl, 0), 1);
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}
END_TEST

START_TEST(test_bad_key_files)
{
    make_keys();
    char key[160], allow[160], path[128];
    snprintf(path, sizeof path, "%s/server.key", keydir);
    ck_assert_int_eq(chmod(path, 0644), 0);
    snprintf(key, sizeof key, "curve_key=%s", path);
    snprintf(allow, sizeof allow, "curve_authorized_keys=%s/authorized_keys", keydir);
    char want[400];
    snprintf(want, sizeof want, "curve_key: %s: a secret key must be readable by its owner only",
             path);
    expect_refused(key, allow, NULL, want);
    ck_assert_int_eq(chmod(path, 0600), 0);
    /* an allow-list with a line that is not a key */
    snprintf(path, sizeof path, "%s/authorized_keys", keydir);
    FILE *f = fopen(path, "a");
    fprintf(f, "not-a-key worker-2\n");
    fclose(f);
    snprintf(want, sizeof want, "curve_authorized_keys: %s:3: 'not-a-key' is not a CurveZMQ", path);
    expect_refused(key, allow, NULL, want);
    /* a key without an allow-list */
    expect_refused(key, NULL, NULL, "curve_key is set but curve_authorized_keys is not");
    remove_keys();
}
END_TEST

START_TEST(test_local_control)
{
    mlt_test_cluster_t cl;
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    /* over plain TCP, stop is refused with the local socket named */
    int code = 0;
    char local[300];
    ck_assert_int_eq(ask(cl.control, NULL, MLT__MSG_TYPE__MSG_JOB_STOP, &code, local, sizeof local),
                     1);
    ck_assert_int_eq(code, EACCES);
    char want[320];
    snprintf(want, sizeof want, "ipc://%s/control.sock", cl.dir);
    ck_assert_str_eq(local, want);
    /* status is still served */
    ck_assert_int_eq(ask(cl.control, NULL, MLT__MSG_TYPE__MSG_JOB_STATUS, &code, NULL, 0), 1);
    ck_assert_int_eq(code, 0);
    /* the socket is the daemon user's only */
    struct stat st;
    ck_assert_int_eq(stat(local + 6, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    /* over it, stop is served (no job: ENOENT, not EACCES) */
    ck_assert_int_eq(ask(local, NULL, MLT__MSG_TYPE__MSG_JOB_STOP, &code, NULL, 0), 1);
    ck_assert_int_eq(code, ENOENT);
    /* and mltunerctl moves there by itself */
    char out[1024];
    const char *argv[] = {"daemon/mltunerctl", "-c", cl.control, "stop", NULL};
    ck_assert_int_eq(mlt_test_run(argv, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "no job is running"), "%s", out);
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("security");
    TCase *tc = tcase_create("security");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_curve_daemon);
    tcase_add_test(tc, test_insecure_binds);
    tcase_add_test(tc, test_bad_key_files);
    tcase_add_test(tc, test_local_control);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
