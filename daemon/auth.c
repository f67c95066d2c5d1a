/* auth.c - see auth.h. */
#include "daemon/auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

int mlt_auth_zmq_loopback(const char *ep)
{
    static const char *const ok[] = {"tcp://127.", "tcp://localhost:", "tcp://[::1]:", "ipc://",
                                     "inproc://"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strncmp(ep, ok[i], strlen(ok[i])) == 0)
            return 1;
    return 0;
}

int mlt_dkeys_load(mlt_dkeys_t *k, const mlt_dconf_t *conf, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    const char *key = conf->curve_key, *allow = conf->curve_authorized_keys;
    if (!key || !*key) {
        if (allow && *allow) {
            snprintf(err, errlen,
                     "curve_authorized_keys is set but curve_key is not: set both "
                     "(or neither)");
            return -EINVAL;
        }
        return 0;
    }
    if (!mlt_curve_available()) {
        snprintf(err, errlen,
                 "curve_key is set but this libzmq has no CURVE (built without "
                 "libsodium)");
        return -ENOTSUP;
    }
    if (!allow || !*allow) {
        snprintf(err, errlen,
                 "curve_key is set but curve_authorized_keys is not: name the file "
                 "of client public keys (e.g. /etc/mltuner/authorized_keys)");
        return -EINVAL;
    }
    char why[512];
    int rc = mlt_curve_load_secret(key, &k->client.me, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "curve_key: %s", why);
        return rc;
    }
    memcpy(k->client.server, k->client.me.pub, sizeof k->client.server);
    memcpy(k->ckeys.public_key, k->client.me.pub, sizeof k->ckeys.public_key);
    memcpy(k->ckeys.secret_key, k->client.me.sec, sizeof k->ckeys.secret_key);
    memcpy(k->ckeys.server_key, k->client.me.pub, sizeof k->ckeys.server_key);
    rc = mlt_curve_allow_load(allow, &k->allow, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "curve_authorized_keys: %s", why);
        mlt_dkeys_free(k);
        return rc;
    }
    /* the coordinator (and the metrics server) are clients of every shard */
    rc = mlt_curve_allow_add(k->allow, k->client.me.pub, "mltunerd");
    if (rc) {
        snprintf(err, errlen, "curve_authorized_keys: %s: more than %d keys", allow,
                 MLT_CURVE_MAX_KEYS - 1);
        mlt_dkeys_free(k);
        return rc;
    }
    k->on = true;
    return 0;
}

void mlt_dkeys_free(mlt_dkeys_t *k)
{
    mlt_curve_allow_destroy(&k->allow);
    memset(k, 0, sizeof *k);
}

int mlt_auth_check_binds(const mlt_dconf_t *conf, const mlt_dkeys_t *k, char *err, size_t errlen)
{
    if (conf->allow_insecure)
        return 0;
    const char *bad = NULL, *what = NULL;
    if (!k->on && !mlt_auth_zmq_loopback(conf->bind))
        bad = conf->bind, what = "bind";
    else if (!k->on && conf->rank == 0 && conf->control_bind && *conf->control_bind &&
             !mlt_auth_zmq_loopback(conf->control_bind))
        bad = conf->control_bind, what = "control_bind";
    if (bad) {
        snprintf(err, errlen,
                 "refusing %s = %s without CurveZMQ keys: set curve_key and "
                 "curve_authorized_keys, or allow_insecure = true to serve plain TCP beyond "
                 "loopback",
                 what, bad);
        return -EACCES;
    }
    const char *m = conf->metrics_listen;
    if (m && *m && strncmp(m, "127.", 4) != 0 && strncmp(m, "localhost:", 10) != 0) {
        snprintf(err, errlen,
                 "refusing metrics_listen = %s: the metrics endpoint is plain HTTP without "
                 "authentication; listen on 127.0.0.1, or set allow_insecure = true",
                 m);
        return -EACCES;
    }
    return 0;
}

int mlt_auth_local_control(const char *state_dir, char *buf, size_t len)
{
    struct sockaddr_un un;
    int n = snprintf(buf, len, "ipc://%s/control.sock", state_dir);
    if (n < 0 || (size_t)n >= len || (size_t)n - 6 >= sizeof un.sun_path)
        return -ENAMETOOLONG;
    return 0;
}
