/* coord_sec.c - who may talk to the coordinator (see coord_int.h).
 *
 * The control ROUTER binds two endpoints, with different options (libzmq
 * copies a socket's options when it binds):
 *   - the local control socket ipc://<state_dir>/control.sock, created with
 *     mode 0600 and ZAP domain MLT_ZAP_DOMAIN_LOCAL, so that the ZAP handler
 *     names its peers "local": whoever may open the file may change the job;
 *   - control_bind, a CurveZMQ server when the daemon has keys (the ZAP
 *     handler names each peer by its allow-list entry), else plain TCP with
 *     ZAP domain MLT_ZAP_DOMAIN_PLAIN (accepted, without a name).
 * SUBMIT and JOB_STOP are served only to a peer with a name ("User-Id"): an
 * authorised key, or the local socket. Everything else (status, metrics,
 * workers' JOIN and REPORT) is served to whoever got through the handshake. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "common/log.h"
#include "daemon/coord_int.h"
#include "daemon/zap.h"

int mlt_coord__bind_control(mlt_coord_t *c, const mlt_dconf_t *conf, char *err, size_t errlen)
{
    bool on = c->keys && c->keys->on;
    c->zap = mlt_zap_start(c->ctx, on ? c->keys->allow : NULL, on ? c->ctl : NULL, "control", err,
                           errlen);
    if (!c->zap)
        return -EIO;
    const char *sd = conf->state_dir;
    if (!sd || !*sd || mlt_auth_local_control(sd, c->local, sizeof c->local) < 0) {
        log_warn("no local control socket (state_dir '%.200s' is empty or too long for a Unix "
                 "socket): submit and stop need a CurveZMQ key",
                 sd ? sd : "");
        c->local[0] = '\0';
    } else {
        zmq_setsockopt(c->ctl, ZMQ_ZAP_DOMAIN, MLT_ZAP_DOMAIN_LOCAL, strlen(MLT_ZAP_DOMAIN_LOCAL));
        mode_t old = umask(0177); /* the file is born 0600: no moment others may connect */
        int rc = zmq_bind(c->ctl, c->local);
        umask(old);
        if (rc < 0) {
            log_warn("cannot bind the local control socket %s: %s: submit and stop need a "
                     "CurveZMQ key",
                     c->local, zmq_strerror(zmq_errno()));
            c->local[0] = '\0';
        } else {
            chmod(c->local + strlen("ipc://"), 0600);
        }
        zmq_setsockopt(c->ctl, ZMQ_ZAP_DOMAIN, MLT_ZAP_DOMAIN_PLAIN, strlen(MLT_ZAP_DOMAIN_PLAIN));
    }
    if (on && mlt_curve_server_socket(c->ctl, &c->keys->client.me) < 0) {
        snprintf(err, errlen, "cannot make %s a CurveZMQ server: %s", conf->control_bind,
                 zmq_strerror(zmq_errno()));
        return -EIO;
    }
    if (zmq_bind(c->ctl, conf->control_bind) < 0) {
        snprintf(err, errlen, "cannot bind control endpoint %s: %s", conf->control_bind,
                 zmq_strerror(zmq_errno()));
        return -EIO;
    }
    return 0;
}

void mlt_coord__unbind_control(mlt_coord_t *c)
{
    mlt_zap_stop(&c->zap);
}

int mlt_coord__may_change(const mlt_coord_t *c, void *msg)
{
    (void)c;
    const char *user = zmq_msg_gets((zmq_msg_t *)msg, "User-Id");
    return user && *user;
}
