/* main.c - mltunerd: parse the command line and the config file, bind, serve
 * until SIGTERM/SIGINT, shut down cleanly (exit 0). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/fpmode.h"
#include "common/log.h"
#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/coord.h"
#include "daemon/httpmetrics.h"
#include "daemon/notify.h"
#include "daemon/server.h"

static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(stop_pipe[1], &b, 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
    errno = saved;
}

/* SIGHUP: the daemon logs to stderr (journald under systemd) and keeps no
 * log file to reopen, and its configuration is read once at start; so a
 * SIGHUP (a logrotate postrotate, a closed terminal) is ignored, with one
 * line on stderr (write(2): the only output a handler may do). */
static void on_hangup_signal(int sig)
{
    (void)sig;
    int saved = errno;
    static const char msg[] = "mltunerd: SIGHUP ignored (logs go to stderr; nothing to reopen; "
                              "restart the daemon to read a changed configuration)\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
        /* nowhere to say it */
    }
    errno = saved;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mltunerd [-c FILE] [--set KEY=VALUE]... [options]\n"
            "  -c, --config FILE        configuration file (default: none, built-in defaults)\n"
            "  -s, --set KEY=VALUE      override one configuration key\n"
            "  -r, --rank N             same as --set rank=N\n"
            "  -b, --bind ENDPOINT      same as --set bind=ENDPOINT (port 0: any free port)\n"
            "  -e, --endpoint-file F    write the bound endpoint to F once listening\n"
            "  -l, --log-level LEVEL    error|warn|info|debug\n"
            "      --print-defaults     print every key with its default and exit\n"
            "  -h, --help               this text\n"
            "  -V, --version            print the version\n");
}

/* Writes the endpoint to path atomically (temporary name, then rename), so a
 * reader never sees half of it. */
static int write_endpoint(const char *path, const char *ep)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "%s\n", ep);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return 0;
}

int main(int argc, char **argv)
{
    mlt_fpmode_flush_denormals(); /* before any thread: they inherit it */
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},   {"set", required_argument, 0, 's'},
        {"rank", required_argument, 0, 'r'},     {"bind", required_argument, 0, 'b'},
        {"endpoint-file", required_argument, 0, 'e'}, {"log-level", required_argument, 0, 'l'},
        {"print-defaults", no_argument, 0, 'P'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0},
    };
    mlt_dconf_t conf;
    mlt_dconf_defaults(&conf);
    char err[512];
    const char *path = NULL;
    /* the file first, then overrides in command-line order */
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    if (path && mlt_dconf_load(&conf, path, err, sizeof err) < 0) {
        fprintf(stderr, "mltunerd: %s\n", err);
        mlt_dconf_free(&conf);
        return 2;
    }
    int c;
    while ((c = getopt_long(argc, argv, "c:s:r:b:e:l:hV", opts, NULL)) != -1) {
        const char *key = NULL;
        char *val = optarg;
        switch (c) {
        case 'c': continue;
        case 'r': key = "rank"; break;
        case 'b': key = "bind"; break;
        case 'e': key = "endpoint_file"; break;
        case 'l': key = "log_level"; break;
        case 's': {
            char *eq = strchr(optarg, '=');
            if (!eq) {
                fprintf(stderr, "mltunerd: --set expects KEY=VALUE, got '%s'\n", optarg);
                mlt_dconf_free(&conf);
                return 2;
            }
            *eq = '\0';
            key = optarg;
            val = eq + 1;
            break;
        }
        case 'P': mlt_dconf_write_defaults(stdout); mlt_dconf_free(&conf); return 0;
        case 'h': usage(stdout); mlt_dconf_free(&conf); return 0;
        case 'V': printf("mltunerd %s\n", MLT_VERSION); mlt_dconf_free(&conf); return 0;
        default: usage(stderr); mlt_dconf_free(&conf); return 2;
        }
        if (mlt_dconf_set(&conf, key, val, err, sizeof err) < 0) {
            fprintf(stderr, "mltunerd: %s\n", err);
            mlt_dconf_free(&conf);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mltunerd: unexpected argument '%s'\n", argv[optind]);
        mlt_dconf_free(&conf);
        return 2;
    }
    if (mlt_dconf_finish(&conf, err, sizeof err) < 0) {
        fprintf(stderr, "mltunerd: %s\n", err);
        mlt_dconf_free(&conf);
        return 2;
    }
    mlt_log_init("mltunerd", (mlt_log_level_t)conf.log_level);
    /* who may talk: the keys, and nothing beyond loopback without them */
    mlt_dkeys_t keys;
    if (mlt_dkeys_load(&keys, &conf, err, sizeof err) < 0 ||
        mlt_auth_check_binds(&conf, &keys, err, sizeof err) < 0) {
        log_error("%s", err);
        mlt_dkeys_free(&keys);
        mlt_dconf_free(&conf);
        return 2;
    }
    if (keys.on)
        log_info("CurveZMQ on: public key %s, %zu keys allowed (%s)", keys.client.me.pub,
                 mlt_curve_allow_count(keys.allow), conf.curve_authorized_keys);

    /* SIGTERM/SIGINT write a byte to a pipe the serving loop polls. A handler
     * (not a blocked signal read with signalfd) because libraries start threads
     * before main runs (OpenBLAS does), and any thread may take the signal. */
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        fprintf(stderr, "mltunerd: pipe: %s\n", strerror(errno));
        mlt_dkeys_free(&keys);
        mlt_dconf_free(&conf);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hangup_signal;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = stop_pipe[0];

    int status = 1;
    int rc;
    mlt_coord_t *coord = NULL;
    mlt_http_t *http = NULL;
    mlt_server_t *srv = mlt_server_new(&conf, &keys, err, sizeof err);
    if (!srv) {
        log_error("%s", err);
        goto out_fd;
    }
    log_info("rank %d of %d listening on %s (chunk %zu bytes, branch memory limit %zu bytes)",
             conf.rank, conf.n_servers, mlt_server_endpoint(srv), conf.chunk_size,
             conf.memory_limit);
    /* rank 0 is also the coordinator */
    if (conf.rank == 0 && conf.control_bind && *conf.control_bind) {
        const char *own[1] = {mlt_server_endpoint(srv)};
        const char *const *shards = conf.servers ? (const char *const *)conf.servers : own;
        coord = mlt_coord_new(&conf, &keys, shards, conf.servers ? conf.n_servers : 1, err, sizeof err);
        if (!coord) {
            log_error("%s", err);
            goto out_srv;
        }
        if (conf.control_endpoint_file && *conf.control_endpoint_file &&
            (rc = write_endpoint(conf.control_endpoint_file, mlt_coord_endpoint(coord))) < 0) {
            log_error("cannot write %s: %s", conf.control_endpoint_file, strerror(-rc));
            goto out_coord;
        }
        if ((rc = mlt_coord_start(coord)) < 0) {
            log_error("cannot start the coordinator: %s", strerror(-rc));
            goto out_coord;
        }
        log_info("coordinator listening on %s", mlt_coord_endpoint(coord));
    }
    if (conf.metrics_listen && *conf.metrics_listen) {
        http = mlt_http_start(conf.metrics_listen, coord ? mlt_coord_endpoint(coord) : NULL,
                              mlt_server_endpoint(srv), (uint32_t)conf.rank,
                              keys.on ? &keys.client : NULL, err, sizeof err);
        if (!http) {
            log_error("%s", err);
            goto out_coord;
        }
    }
    /* the endpoint file last: when it appears, everything listens */
    if (conf.endpoint_file && *conf.endpoint_file) {
        rc = write_endpoint(conf.endpoint_file, mlt_server_endpoint(srv));
        if (rc < 0) {
            log_error("cannot write endpoint file %s: %s", conf.endpoint_file, strerror(-rc));
            goto out_coord;
        }
    }
    mlt_notify_status("shard %d of %d serving on %s", conf.rank, conf.n_servers,
                      mlt_server_endpoint(srv));
    mlt_notify_ready();
    rc = mlt_server_run(srv, sfd);
    mlt_notify_stopping(); /* a signal or a failed socket: shutdown begins either way */
    if (rc < 0) {
        log_error("serving stopped: %s", strerror(-rc));
        goto out_coord;
    }
    unsigned char signo = 0;
    if (read(sfd, &signo, 1) == 1)
        log_info("%s received, shutting down", strsignal((int)signo));
    status = 0;
out_coord:
    mlt_http_stop(&http);
    mlt_coord_destroy(&coord);
out_srv:
    mlt_server_destroy(&srv);
out_fd:
    close(stop_pipe[0]);
    close(stop_pipe[1]);
    mlt_dkeys_free(&keys);
    mlt_dconf_free(&conf);
    return status;
}
