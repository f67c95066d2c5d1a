/* ctl_keys.c - mltunerctl's side of authentication: `keygen`, the CurveZMQ
 * keys it connects with (--key/--server-key, or MLTUNER_KEY and
 * MLTUNER_SERVER_KEY), and the move to the daemon's local control socket when
 * a SUBMIT or JOB_STOP is refused for want of a key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/curve.h"
#include "daemon/ctl.h"

#define DEFAULT_SERVER_KEY "/etc/mltuner/server.pub"

static int have_keys;
static mlt_curve_client_t keys;
static char local_ep[320]; /* the local control socket we moved to */

int ctl_keygen(int argc, char **argv)
{
    const char *name = NULL, *dir = ".";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else {
            fprintf(stderr, "mltunerctl: keygen: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "mltunerctl: keygen needs a NAME (writes NAME.key and NAME.pub)\n");
        return 2;
    }
    char err[512];
    if (mlt_curve_keygen(dir, name, err, sizeof err) < 0) {
        fprintf(stderr, "mltunerctl: keygen: %s\n", err);
        return 1;
    }
    printf("wrote %s/%s.key (secret, mode 0600) and %s/%s.pub\n", dir, name, dir, name);
    return 0;
}

int ctl_keys_init(const char *key, const char *server_key)
{
    if (!key || !*key)
        key = getenv("MLTUNER_KEY");
    if (!server_key || !*server_key)
        server_key = getenv("MLTUNER_SERVER_KEY");
    if (!key || !*key) {
        if (server_key && *server_key) {
            fprintf(stderr, "mltunerctl: a server key without a client key (--key or "
                            "MLTUNER_KEY): give both\n");
            return -EINVAL;
        }
        return 0;
    }
    if (!server_key || !*server_key)
        server_key = DEFAULT_SERVER_KEY;
    char err[512];
    if (mlt_curve_load_secret(key, &keys.me, err, sizeof err) < 0 ||
        mlt_curve_load_public(server_key, keys.server, err, sizeof err) < 0) {
        fprintf(stderr, "mltunerctl: %s\n", err);
        return -EINVAL;
    }
    have_keys = 1;
    return 0;
}

void *ctl_connect(void *ctx, const char *ep)
{
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    /* the local socket needs no key: its file's permissions are the check */
    if (have_keys && strncmp(ep, "ipc://", 6) != 0 && mlt_curve_client_socket(sock, &keys) < 0) {
        fprintf(stderr, "mltunerctl: CurveZMQ keys refused: %s\n", zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    if (zmq_connect(sock, ep) < 0) {
        fprintf(stderr, "mltunerctl: cannot connect to %s: %s\n", ep, zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

mlt_header_t *ctl_request_change(void *ctx, void **sockp, mlt_header_t *h)
{
    mlt_header_t *r = request(*sockp, h);
    if (!r || r->type != MLT__MSG_TYPE__MSG_ERROR || r->error_code != EACCES || !r->local_control ||
        strncmp(r->local_control, "ipc://", 6) != 0)
        return r;
    /* refused for want of a key: the daemon's local socket, if this user may open it */
    snprintf(local_ep, sizeof local_ep, "%s", r->local_control);
    mlt_wire_free(&r);
    void *sock = ctl_connect(ctx, local_ep);
    if (!sock)
        return NULL;
    zmq_close(*sockp);
    *sockp = sock;
    endpoint = local_ep;
    return request(sock, h);
}

int ctl_have_keys(void)
{
    return have_keys;
}
